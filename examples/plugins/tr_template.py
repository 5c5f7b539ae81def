"""A template tracerules plugin: copy it, rename it, make it do something useful.

tracerules runs a plugin in one of two ways (see `type: plugin` in docs/rule-format.md):

As a script, in its own process, with the service's Python interpreter:

    actions:
      - type: gw-alert
      - type: plugin
        script: examples/plugins/tr_template.py
        folder: "plugins/{trigger}/{event_id}"   # passed as the first argument
        timeout: 20                              # then the script is killed

  The context arrives as JSON on stdin; exit 0 means success, anything else failure.
  Print what you want in the action's log; stderr is logged too, but never judged.

As an entry point, in the service's process (fast, but a hung function cannot be killed):

    actions:
      - type: plugin
        entry: tr_template:plugin        # module:function, importable by the service

The context (a dict here, a PluginContext object for entry points) holds:

    tool             "tracerules 0.1.0"
    trigger          the trigger id
    event_id         the event (superevent) id
    decision         {"id", "conclusion", "event_time"}
    notice           {"topic", "partition", "offset", "notice_id", "ext", "payload"}
                     ("payload_path" instead with `payload: file`, neither with `none`)
    fields           the trigger's fields, by name (a missing value is "-")
    files            files written by the decision's earlier actions, e.g. the gw-alert
                     folder's meta.yaml, skymap.csv and skymap.png
    folder           this plugin's output folder
    idempotency_key  the same on every retry of this action: use it to act once

Only the standard library is used here, so the template runs anywhere tracerules does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def plugin(context: Any) -> bool:
    """Do the work. Return True (or None) on success, False on failure.

    ``context`` is a tracerules PluginContext (entry point) or the JSON dict (script).
    """
    get = context.get if isinstance(context, dict) else lambda key: getattr(context, key)
    folder = Path(get("folder"))
    files = [Path(f) for f in get("files")]
    summary = {
        "trigger": get("trigger"),
        "event_id": get("event_id"),
        "decision": get("decision"),
        "files_seen": [f.name for f in files],
    }
    meta = next((f for f in files if f.name == "meta.yaml"), None)
    if meta is not None:
        # gocart plugins read meta.yaml: ALERT, HEADER and EXTRA (area90, distance, ...).
        summary["meta_bytes"] = meta.stat().st_size
    (folder / "plugin-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"tr_template: {get('trigger')} {get('event_id')}: {len(files)} files seen")
    return True


def main() -> int:
    """Script form: the output folder as argv[1], the context as JSON on stdin."""
    if len(sys.argv) < 2:
        print("usage: tr_template.py OUTPUT_FOLDER < context.json", file=sys.stderr)
        return 2
    context = json.load(sys.stdin)
    context["folder"] = sys.argv[1]
    return 0 if plugin(context) is not False else 1


if __name__ == "__main__":
    sys.exit(main())
