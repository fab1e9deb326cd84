#!/usr/bin/env python3
"""Where oneDNN's time goes: reads ONEDNN_VERBOSE=1 output (stdin or files) and prints the total
time of the executed primitives grouped by kind, propagation, depthwise or dense, kernel size and
oneDNN's implementation, largest first. Used by scripts/bench-onednn.sh."""
import collections
import fileinput
import re


def group(kind, impl, prop, desc):
    if kind != "convolution":
        return f"{kind} {prop} [{impl}]"
    shape = "depthwise" if desc.startswith("g") else "dense"
    k = re.search(r"kh(\d+)", desc).group(1)
    dilation = int(re.search(r"dh(\d+)", desc).group(1)) + 1  # oneDNN writes dilation - 1
    kernel = f"{k}x{k}" + (f" dilation {dilation}" if dilation > 1 else "")
    return f"{kind} {prop} {shape} {kernel} [{impl}]"


def main():
    totals = collections.defaultdict(lambda: [0, 0.0])
    for line in fileinput.input():
        if ",primitive,exec," not in line:
            continue
        f = line.rstrip().split(",")
        key = group(f[5], f[6], f[7], f[-2])
        totals[key][0] += 1
        totals[key][1] += float(f[-1])
    print(f"{sum(t for _, t in totals.values()) / 1000:.2f} s in oneDNN primitives")
    for key, (calls, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"{ms / 1000:8.3f} s {calls:7d} calls  {key}")


if __name__ == "__main__":
    main()
