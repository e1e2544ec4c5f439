"""Rewrite every golden file from the current code: ``python -m tests.workflow.regen_goldens``.

Review the diff before committing: a golden change is a behaviour change.
"""

from __future__ import annotations

from tests.workflow._cases import GOLDEN_DIR, cases, golden_path, render


def main() -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for case in cases():
        path = golden_path(case)
        wanted.add(path.name)
        text = render(case)
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        print(f"{'updated' if changed else 'same   '} {path.relative_to(GOLDEN_DIR.parent)}")
    for stale in sorted(GOLDEN_DIR.glob("*.json")):
        if stale.name not in wanted:
            stale.unlink()
            print(f"removed {stale.name}")


if __name__ == "__main__":
    main()
