#!/usr/bin/env python3
"""Size limits of the code base, checked by the test command:

  - no non-test Rust source file over 400 lines (a `#[cfg(test)] mod tests { ... }` block at the end
    of a file does not count: move long ones to a sibling file, `#[cfg(test)] mod tests;`);
  - no non-test function over 60 lines (from its `fn` line to its closing brace).

Test code is what lives under `tests/`, in a `tests.rs` / `test.rs` sibling module, or in an inline
`#[cfg(test)]` module. Benchmarks and examples count as non-test code. The fuzz crate is included.

  scripts/check-size.py            # print every violation, exit 1 if there is one
"""
import pathlib
import re
import sys

MAX_FILE_LINES = 400
MAX_FN_LINES = 60
ROOT = pathlib.Path(__file__).resolve().parent.parent
FN_RE = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def is_test_file(path: pathlib.Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return "tests" in parts or path.name in ("tests.rs", "test.rs")


def strip_test_modules(lines):
    """The lines that are not inside a `#[cfg(test)]` item (a module or a function)."""
    kept, depth, skipping, pending = [], 0, False, False
    for line in lines:
        stripped = line.strip()
        if not skipping and stripped.startswith("#[cfg(test)]"):
            pending = True
            continue
        if pending and not skipping:
            if stripped.endswith(";"):  # `mod tests;`: a sibling file, nothing to skip
                pending = False
                continue
            if "{" in stripped:
                skipping, depth, pending = True, 0, False
        if skipping:
            depth += line.count("{") - line.count("}")
            if depth <= 0 and "}" in line:
                skipping = False
            continue
        kept.append(line)
    return kept


def long_functions(lines):
    """(name, first line number, length) of every function longer than the limit."""
    found = []
    for index, line in enumerate(lines):
        match = FN_RE.match(line)
        if not match or line.rstrip().endswith(";"):
            continue
        depth, opened = 0, False
        for end in range(index, len(lines)):
            depth += lines[end].count("{") - lines[end].count("}")
            opened = opened or "{" in lines[end]
            if opened and depth <= 0:
                length = end - index + 1
                if length > MAX_FN_LINES:
                    found.append((match.group(6), index + 1, length))
                break
            if not opened and lines[end].rstrip().endswith(";"):
                break
    return found


def main() -> int:
    violations = []
    for path in sorted(ROOT.rglob("*.rs")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in ("target", ".git") or "target" in relative.parts or is_test_file(path):
            continue
        lines = strip_test_modules(path.read_text().splitlines())
        if len(lines) > MAX_FILE_LINES:
            violations.append(f"{relative}: {len(lines)} lines of non-test code (limit {MAX_FILE_LINES})")
        for name, line, length in long_functions(lines):
            violations.append(f"{relative}: fn {name} (line {line} without tests) is {length} lines (limit {MAX_FN_LINES})")
    for violation in violations:
        print(violation)
    print(f"check-size: {len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
