"""The server's counters, rendered in the Prometheus text format for `GET /metrics` (no extra dependency)."""
from __future__ import annotations

import bisect
import threading
import time
from collections import Counter

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.sum:.6f}", f"{name}_count{suffix} {self.n}"]
        return out


class Metrics:
    """Request, prediction and batch counters. Updated on the event loop; read from any thread."""

    def __init__(self, model: str, runner: str):
        self.model, self.runner = model, runner
        self.started = time.time()
        self._lock = threading.Lock()
        self.requests: Counter = Counter()          # (endpoint, status) -> n
        self.predictions: Counter = Counter()       # label -> n
        self.latency = {}                            # endpoint -> histogram (successful requests)
        self.confidence = _Histogram(CONFIDENCE_BUCKETS)
        self.batch_size = _Histogram(BATCH_BUCKETS)
        self.inference_seconds = _Histogram(LATENCY_BUCKETS)
        self.in_flight = 0

    @property
    def request_count(self) -> int:
        return sum(self.requests.values())

    @property
    def prediction_count(self) -> int:
        return sum(self.predictions.values())

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            if status < 400:
                self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def predicted(self, labels, confidences) -> None:
        with self._lock:
            for label, conf in zip(labels, confidences):
                self.predictions[label] += 1
                self.confidence.observe(float(conf))

    def batch(self, n: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(n)
            self.inference_seconds.observe(seconds)

    def render(self) -> str:
        m = _escape(self.model)
        with self._lock:
            lines = [
                "# HELP nbml_model_info The model this server serves.", "# TYPE nbml_model_info gauge",
                f'nbml_model_info{{model="{m}",runner="{_escape(self.runner)}"}} 1',
                "# HELP nbml_start_time_seconds When the server started (unix time).",
                "# TYPE nbml_start_time_seconds gauge", f"nbml_start_time_seconds {self.started:.3f}",
                "# HELP nbml_requests_total HTTP requests by endpoint and status code.",
                "# TYPE nbml_requests_total counter"]
            lines += [f'nbml_requests_total{{endpoint="{_escape(e)}",code="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += ["# HELP nbml_requests_in_flight Requests being handled now.",
                      "# TYPE nbml_requests_in_flight gauge", f"nbml_requests_in_flight {self.in_flight}",
                      "# HELP nbml_predictions_total Images classified, by predicted label.",
                      "# TYPE nbml_predictions_total counter"]
            lines += [f'nbml_predictions_total{{model="{m}",label="{_escape(k)}"}} {n}'
                      for k, n in sorted(self.predictions.items())]
            lines += ["# HELP nbml_request_duration_seconds Latency of successful requests, in the server.",
                      "# TYPE nbml_request_duration_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("nbml_request_duration_seconds", f'endpoint="{_escape(endpoint)}"')
            lines += ["# HELP nbml_prediction_confidence Probability of the predicted label.",
                      "# TYPE nbml_prediction_confidence histogram"]
            lines += self.confidence.lines("nbml_prediction_confidence", f'model="{m}"')
            lines += ["# HELP nbml_batch_size Images per model call (dynamic batching).",
                      "# TYPE nbml_batch_size histogram"]
            lines += self.batch_size.lines("nbml_batch_size")
            lines += ["# HELP nbml_inference_seconds Time of one model call.",
                      "# TYPE nbml_inference_seconds histogram"]
            lines += self.inference_seconds.lines("nbml_inference_seconds")
        return "\n".join(lines) + "\n"
