"""A session in a child process for the node tests: ``python node_child.py ROOT MODE URL
DURATION [every=N] [hold=N] [serve=TOKEN_FILE]`` — the real node builder over the run file,
with a :class:`~pivotal.testing.scripted_source.ScriptedSource` instead of the orchestrator;
``serve``: the API and dashboard on a free port, as ``pivotal run ... --serve`` starts them."""

from __future__ import annotations

import sys
from pathlib import Path

from pivotal.config import load_config
from pivotal.data.duckdb_store import open_store
from pivotal.node.build import SessionOptions, build_node
from pivotal.orchestrator.run_file import load_run_config
from pivotal.testing.scripted_source import ScriptedSource


def main() -> int:
    root, mode, url, duration = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    extra = dict(arg.split("=", 1) for arg in sys.argv[5:])
    run = load_run_config(root / "run.yaml")
    config, _ = load_config(None, data_dir=root / "data", use_default_file=False)
    every, hold = int(extra.get("every", 3)), int(extra.get("hold", 1))
    with open_store(root / "data") as store:
        node = build_node(
            run,
            SessionOptions(mode=mode, endpoint=url, duration_s=duration),
            run_file=root / "run.yaml",
            store=store,
            config=config,
            data_dir=root / "data",
            source=lambda t0: ScriptedSource(run.base, every=every, hold=hold),
        )
        server = None
        if "serve" in extra:  # the CLI's own glue (pivotal run ... --serve)
            from pivotal.apps.cli.session_cmd import ServeOptions, _start_server

            options = ServeOptions(port=0, token_file=Path(extra["serve"]))
            server = _start_server(node, options, lambda line: print(line, flush=True))
        try:
            report = node.run()
        finally:
            if server is not None:
                view, api = server
                view.close()
                api.stop()
            node.journal.close()
    print(f"stopped: {report.stop_reason}; decisions {report.decisions}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
