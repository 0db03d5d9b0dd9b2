"""Output-file pattern matching, blob naming and resource-file validation (no storage needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from devstack.batch_emulator.executor import (
    _blob_name,
    match_output_files,
    resource_file_problem,
    task_directory,
)
from devstack.batch_emulator.storage_transfer import UploadOptions, redact_url


@pytest.fixture
def task_tree(tmp_path: Path) -> Path:
    """A task directory with std files and a working dir holding nested and hidden files."""
    task = tmp_path / "task"
    wd = task / "wd"
    for rel in ["a.mp3", "b.mp3", "c.txt", ".hidden.mp3", "x1.log", "x2.log", "y1.log",
                "out/one.mp3", "out/deep/two.mp3", "out/.cache/three.mp3", "abc*"]:
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_text(rel)
    (task / "stdout.txt").write_text("o")
    (task / "stderr.txt").write_text("e")
    return wd


def names(matches: list[tuple[Path, str]]) -> list[str]:
    return [name for _, name in matches]


@pytest.mark.parametrize("pattern, expected", [
    ("*.mp3", ["a.mp3", "b.mp3"]),                                  # * skips dotfiles
    (".*.mp3", [".hidden.mp3"]),                                    # unless the pattern starts with "."
    ("x?.log", ["x1.log", "x2.log"]),
    ("[xy]1.log", ["x1.log", "y1.log"]),
    ("[!x]1.log", ["y1.log"]),
    ("**/*.mp3", ["a.mp3", "b.mp3", "out/deep/two.mp3", "out/one.mp3"]),
    ("out/**/*.mp3", ["deep/two.mp3", "one.mp3"]),                  # names are below the literal prefix
    ("../std*.txt", ["stderr.txt", "stdout.txt"]),
    ("abc[*]", ["abc*"]),                                           # brackets escape a wildcard
    ("nothing*.bin", []),
])
def test_wildcard_patterns(task_tree: Path, pattern: str, expected: list[str]) -> None:
    assert names(match_output_files(pattern, task_tree, {})) == expected


def test_single_file_patterns_use_the_file_name(task_tree: Path) -> None:
    assert names(match_output_files("../stdout.txt", task_tree, {})) == ["stdout.txt"]
    assert match_output_files("out/one.mp3", task_tree, {}) == [(task_tree / "out" / "one.mp3", "one.mp3")]
    assert match_output_files("missing.mp3", task_tree, {}) == []
    absolute = str(task_tree / "c.txt")
    assert match_output_files(absolute, task_tree, {}) == [(task_tree / "c.txt", "c.txt")]


def test_environment_variables_expand_before_matching(task_tree: Path) -> None:
    env = {"AZ_BATCH_TASK_DIR": str(task_tree.parent), "EXT": "log"}
    assert names(match_output_files("$AZ_BATCH_TASK_DIR/stderr.txt", task_tree, env)) == ["stderr.txt"]
    assert names(match_output_files("x*.${EXT}", task_tree, env)) == ["x1.log", "x2.log"]


def test_blob_names_follow_destination_path_rules() -> None:
    assert _blob_name("a b/ü clip.mp3", "out.mp3", has_wildcards=False) == "a b/ü clip.mp3"
    assert _blob_name("logs/task1/", "stderr.txt", has_wildcards=True) == "logs/task1/stderr.txt"
    assert _blob_name(None, "deep/two.mp3", has_wildcards=True) == "deep/two.mp3"
    assert _blob_name("", "out.mp3", has_wildcards=False) == "out.mp3"


@pytest.mark.parametrize("resource_file, problem", [
    ({"httpUrl": "http://x/y", "filePath": "in.mp4"}, None),
    ({"httpUrl": "http://x/y", "filePath": "sub/dir/in.mp4", "fileMode": "0644"}, None),
    ({"storageContainerUrl": "http://x/c", "blobPrefix": "p/"}, None),
    ({"autoStorageContainerName": "c", "filePath": "inputs"}, None),
    ({"httpUrl": "http://x/y"}, "filePath is required"),
    ({"httpUrl": "http://x/y", "filePath": "."}, "filePath is required"),
    ({"httpUrl": "http://x/y", "filePath": "../escape.txt"}, "inside the task working directory"),
    ({"httpUrl": "http://x/y", "filePath": "a/../../escape.txt"}, "inside the task working directory"),
    ({"httpUrl": "http://x/y", "filePath": "/etc/passwd"}, "inside the task working directory"),
    ({"httpUrl": "http://x/y", "storageContainerUrl": "http://x/c", "filePath": "f"}, "exactly one"),
    ({"filePath": "f"}, "exactly one"),
    ({"httpUrl": "http://x/y", "filePath": "f", "blobPrefix": "p"}, "blobPrefix"),
    ({"httpUrl": "http://x/y", "filePath": "f", "fileMode": "rwx"}, "fileMode"),
])
def test_resource_file_validation(resource_file: dict, problem: str | None) -> None:
    found = resource_file_problem(resource_file)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_task_directory_layout(tmp_path: Path) -> None:
    assert task_directory(tmp_path, "job-1", "t_1") == tmp_path / "workitems" / "job-1" / "job-1" / "t_1"
    assert task_directory(tmp_path, None, "starttask") == tmp_path / "startup"
    with pytest.raises(ValueError):
        task_directory(tmp_path, "job", "../evil")


def test_redact_url_drops_sas() -> None:
    url = "http://127.0.0.1:10000/devstoreaccount1/in/a%20b.mp4?sv=2024&sig=SECRET%3D&se=x"
    assert redact_url(url) == "http://127.0.0.1:10000/devstoreaccount1/in/a%20b.mp4"


def test_upload_headers_translate_to_blob_properties() -> None:
    options = UploadOptions.from_upload_headers([
        {"name": "Content-Type", "value": "audio/mpeg"},
        {"name": "x-ms-blob-cache-control", "value": "no-cache"},
        {"name": "x-ms-meta-Source", "value": "clip.mp4"},
        {"name": "x-ms-tags", "value": "kind=audio&stage=out"},
        {"name": "x-ms-access-tier", "value": "cool"},
    ])
    assert options.content_settings is not None
    assert options.content_settings.content_type == "audio/mpeg"
    assert options.content_settings.cache_control == "no-cache"
    assert options.metadata == {"Source": "clip.mp4"}
    assert options.tags == {"kind": "audio", "stage": "out"}
    assert options.tier is not None and options.tier.value == "Cool"
    assert options.extra_headers == {}
