"""Build the function app's deployment package the way `azd deploy` does: every file under the
project directory except those `.funcignore` excludes (gitignore syntax), and never
`local.settings.json` (azd and Core Tools always leave it out).

Used by tests/infra/test_package.py to prove the package holds exactly the runtime files, and
usable for a manual deployment:  python -m infra.package --out dist/app.zip
(then e.g. `az functionapp deployment source config-zip --src dist/app.zip ...`).
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

import pathspec

IGNORE_FILE = ".funcignore"
ALWAYS_EXCLUDED = ("local.settings.json",)
# Fixed timestamp so the same tree always zips to the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def load_ignore(project_dir: Path) -> pathspec.GitIgnoreSpec:
    path = project_dir / IGNORE_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return pathspec.GitIgnoreSpec.from_lines([*lines, *ALWAYS_EXCLUDED])


def package_files(project_dir: Path) -> list[str]:
    """Relative POSIX paths of the files that go into the package, sorted."""
    project_dir = project_dir.resolve()
    spec = load_ignore(project_dir)
    kept: list[str] = []
    for root, dirs, files in os.walk(project_dir):
        rel_root = Path(root).relative_to(project_dir).as_posix()
        prefix = "" if rel_root == "." else f"{rel_root}/"
        # As git does: an excluded directory is not descended into, so nothing under it returns.
        dirs[:] = sorted(d for d in dirs if not spec.match_file(f"{prefix}{d}/"))
        for name in sorted(files):
            rel = f"{prefix}{name}"
            if not spec.match_file(rel) and not os.path.islink(os.path.join(root, name)):
                kept.append(rel)
    return sorted(kept)


def build_package(project_dir: Path, out_zip: Path) -> list[str]:
    """Write the package to `out_zip` (deterministic bytes); returns the files it holds."""
    files = package_files(project_dir)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel in files:
            info = zipfile.ZipInfo(rel, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (project_dir / rel).read_bytes())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--out", type=Path, help="zip to write; without it, list the files")
    args = parser.parse_args(argv)
    if args.out is None:
        print("\n".join(package_files(args.project)))
        return 0
    files = build_package(args.project, args.out)
    print(f"{args.out}: {len(files)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
