// The JSON the nbml server extension answers (nbml/jupyter, GET {base}nbml/api/projects and .../servers).

export interface Run {
  id: number;
  arch: string | null;
  accuracy: number | null;
  status: string;
  started: string | null;
}

export interface Project {
  path: string;            // relative to the server's root, posix
  name: string;
  kind: string | null;
  items: number;
  labelled: number;
  labelled_fraction: number;
  classes: Record<string, number>;
  runs: Run[];
  error: string | null;
}

export interface Projects {
  root: string;
  projects: Project[];
}

export interface Server {
  name: string;
  port: number;
  pid: number;
  folder: string;
  kind: string | null;
  url: string;             // proxied path under Jupyter's base URL, e.g. /nbml/models/colours/
  direct_url: string;
  requests: number;
  p50_ms: number | null;
  started: string;
}

export interface Servers {
  servers: Server[];
}
