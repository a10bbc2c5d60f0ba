"""Not the real `rfc3987_syntax`: put first on PYTHONPATH for the processes of a local Ray that
`nbml.predict_files(engine="ray")` starts (see `nbml._ray.local_ray_env`), so that their
`import ray` -> `import jsonschema` skips it, as if it were not installed.

jsonschema imports each optional format checker's package it finds when it is first imported; this one (installed
by JupyterLab's jupyter-events) builds a lark Earley grammar at import, ~2.3 s of CPU of the ~3 s `import ray`
takes. Ray never checks formats (it calls `jsonschema.validate` without a format checker), so only the "iri" format
check is lost, in those processes only.
"""
raise ImportError("rfc3987_syntax is left out of the processes of nbml's local Ray (nbml/_ray_path)")
