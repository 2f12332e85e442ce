#!/usr/bin/env python3
"""Writes the C++ block that follows `<!-- example: NAME -->` in a Markdown file,
so the README's example is compiled and run as a test and cannot rot."""
import sys

src, name, out = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(src, encoding="utf-8").read().splitlines()
marker = f"<!-- example: {name} -->"
start = lines.index(marker)
begin = next(i for i in range(start, len(lines)) if lines[i].startswith("```cpp"))
end = next(i for i in range(begin + 1, len(lines)) if lines[i].startswith("```"))
open(out, "w", encoding="utf-8").write("\n".join(lines[begin + 1:end]) + "\n")
