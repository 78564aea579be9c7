#!/usr/bin/env python3
"""aws-cpu-parts.py BINARY PROFILE: split a CPU profile's samples into the parts of AWS calls.

Usage (docs/performance.md, "AWS adapter CPU per call (awscalls)"):

    scripts/aws-cpu-parts.py /tmp/awsfleet.test /tmp/a.prof
    DEBUG=XML scripts/aws-cpu-parts.py ...   (also lists the top frames of the parts so named)
    SAMPLE=alloc_space STEPS=1 scripts/aws-cpu-parts.py BINARY MEMPROFILE   (bytes allocated, not
    CPU; SAMPLE=alloc_objects counts the allocations: a -memprofile with -memprofilerate 1)

Stacks under the HTTP server (cloudsim, in the same process) are the emulator's; stacks with
no AWS SDK, adapter or net/http frame are the rest of the process (or GC and scheduler work
when they have no frame but the runtime's). Every other sample goes to the first rule matching
one of its frames from the leaf up, runtime frames skipped, so an allocation (and the GC assist
it pays) counts for the code that allocated."""
import re, subprocess, sys
from collections import defaultdict

binary, prof = sys.argv[1], sys.argv[2]
import os
SAMPLE = os.environ.get("SAMPLE", "")
args = ["go", "tool", "pprof", "-traces"] + (["-sample_index=" + SAMPLE] if SAMPLE else []) + [binary, prof]
out = subprocess.run(args, capture_output=True, text=True).stdout
# CPU samples are in seconds; bytes (alloc_space) in bytes; counts (alloc_objects) as they are.
UNITS = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "": 1}
unit = "s" if not SAMPLE else ("B" if SAMPLE.endswith("space") else "")
def fmt(v):
    return f"{v:.2f}s" if unit == "s" else f"{v:,.0f}{unit}"

awscall = re.compile(r"aws-sdk-go-v2|smithy-go|libs/provider/awsfleet\.|^net/http")
server = re.compile(r"net/http\.\(\*conn\)\.serve|services/cloudsim\.")
rules = [
    ("XML/JSON deserialisation (SDK decoders, encoding/xml, encoding/json, our lean decoders)",
     re.compile(r"deserialize|Deserialize|encoding/xml|encoding/json|smithy-go/encoding/xml|smithy-go/encoding/json|awsfleet\.decode|awsfleet\.(isName|validText|reference|inXMLRange|isDigit|leanEC2Decoders|getBodyBuffer|putBodyBuffer)|awsfleet\.\(\*xmlReader\)|awsfleet\.\(\*leanDeserializer\)|smithy-go/io|awsjson|protocol/internal/json|smithy-go\.Read|ShapeDeserializer")),
    ("endpoint resolution (EndpointResolverV2 rules, legacy resolver)",
     re.compile(r"[Ee]ndpoint|rulesfn|awsrulesfn|endpoints/")),
    ("SigV4 signing (payload hash, canonical request, HMAC)",
     re.compile(r"signer/v4|signer/internal|crypto/")),
    ("retry and rate limit (SDK retryer, our limiter middleware)",
     re.compile(r"aws/retry|libs/ratelimit|aws/ratelimit")),
    ("request serialisation (query/JSON encoding of inputs)",
     re.compile(r"serialize|Serialize|aws/protocol/query|encoding/httpbinding|smithy-go/encoding")),
    ("HTTP client and transport (net/http, sockets)",
     re.compile(r"^net/http|^net\.|internal/poll|^syscall|^bufio|^net/textproto")),
    ("our adapter code (awsfleet outside the decoders, metrics)",
     re.compile(r"libs/provider/awsfleet\.|prometheus")),
    ("SDK middleware stack and the rest of the SDK (options copy, user agent, ids, context values)",
     re.compile(r"aws-sdk-go-v2|smithy-go")),
    ("benchmark harness", re.compile(r"awsfleet_test|^testing\.")),
]
parts = defaultdict(float)
DEBUG = os.environ.get("DEBUG", "\x00")
dbg = defaultdict(float)
# STEPS=1 also splits the client side by the innermost middleware running (its own code, not
# the handlers it calls next): every SDK step by name.
STEPS = os.environ.get("STEPS") == "1"
steps = defaultdict(float)
handler = re.compile(r"\.Handle(Initialize|Serialize|Build|Finalize|Deserialize)$|Func\.Handle|ClientHandler\.Handle$|\.RoundTrip$|\.Do$")
generic = re.compile(r"smithy-go/middleware\.(decorated|\(\*?(orderedIDs|Stack|decorated|Initialize|Serialize|Build|Finalize|Deserialize)Step|stepWrap|.*Wrap)|smithy-go/middleware\.\((Initialize|Serialize|Build|Finalize|Deserialize)HandlerFunc\)|smithy-go/middleware\.decoratedHandler|awshttp\.\(\*BuildableClient\)\.Do")
total = 0.0
for block in out.split("-----------+-------------------------------------------------------"):
    # A memory profile's traces start with their labels (bytes: 16B); CPU ones have none.
    lines = [l for l in block.strip("\n").split("\n") if l.strip() and not l.strip().startswith("bytes:")]
    if not lines:
        continue
    m = re.match(r"\s*([\d.]+)(ns|us|ms|s|[kMG]?B|)\s+(\S+)", lines[0])
    if not m:
        continue
    v = float(m.group(1)) * UNITS[m.group(2)]
    frames = [m.group(3)] + [l.strip() for l in lines[1:]]
    frames = [f.split()[0] for f in frames if f]
    total += v
    if any(server.search(f) for f in frames):
        parts["emulator (cloudsim and its HTTP server, same process)"] += v
        continue
    if not any(awscall.search(f) for f in frames):
        user = [f for f in frames if not f.startswith(("runtime.", "internal/runtime", "gcWriteBarrier", "aeshash", "memeqbody", "indexbyte", "countbody", "cmpbody"))]
        parts["GC and scheduler background" if not user else "rest of the process (not an AWS call)"] += v
        continue
    user = [f for f in frames if not f.startswith(("runtime.", "internal/runtime", "gcWriteBarrier", "aeshash", "memeqbody", "indexbyte", "countbody", "cmpbody"))]
    name = None
    for f in user:
        for n, rx in rules:
            if rx.search(f):
                name = n
                break
        if name:
            break
    if name is None:
        name = "GC and scheduler background" if not user else "other (" + user[0] + ")"
    parts[name] += v
    if STEPS and not name.startswith(("benchmark", "GC")):
        step = next((f for f in user if handler.search(f) and not generic.search(f)), "(no middleware: " + (user[-1] if user else "-") + ")")
        steps[re.sub(r"^.*/", "", step)] += v
    if name.startswith(DEBUG):
        dbg[user[0] if user else "-"] += v
client = sum(v for k, v in parts.items() if not k.startswith(("emulator", "benchmark", "GC", "rest")))
print(f"total {fmt(total)}, AWS calls client side {fmt(client)}")
for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
    share = f"{100*v/client:5.1f}% of client" if not k.startswith(("emulator", "benchmark", "GC", "rest")) else ""
    print(f"{fmt(v):>12s}  {share:18s} {k}")

for k, v in sorted(dbg.items(), key=lambda kv: -kv[1])[:25]:
    print(f"   debug {v:.2f} {k}")
if STEPS:
    for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:40]:
        print(f"   step {fmt(v):>12s} {k}")
