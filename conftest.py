"""Settings for every test, notebooks included: no network, caches inside the checkout."""
import os

# No test may touch the network: timm / huggingface_hub answer from the (empty) local cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("NBML_HOME", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "nbml"))
