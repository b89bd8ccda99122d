"""Closed-loop load for bench/pipelines.sh: CONC threads, each on its own
keep-alive HTTP connection, send one sentence per request for SECONDS.

usage: pipelines.py MODE URL SENTENCES_JSONL SECONDS CONC [TOKENIZER_JSON]
  MODE text:   V2 JSON with the sentence as a BYTES input `text` (hone's
               minilm_text, the FastAPI peer);
  MODE tokens: the client tokenizes with the `tokenizers` package and sends
               input_ids / attention_mask / token_type_ids (hone's minilm).
Prints one JSON line: sentences/s, p50 and p99 in ms, errors.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

mode, url, path, seconds, conc = sys.argv[1:6]
seconds, conc = float(seconds), int(conc)
sentences = [json.loads(line)["text"] for line in open(path)]
tok = None
if mode == "tokens":
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(sys.argv[6])
    tok.no_padding()
    tok.enable_truncation(256)
u = urllib.parse.urlparse(url)


def body(text):
    if tok is None:
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]
    else:
        e = tok.encode(text)
        n = len(e.ids)
        inputs = [
            {"name": name, "datatype": "INT64", "shape": [1, n], "data": values}
            for name, values in (("input_ids", e.ids), ("attention_mask", e.attention_mask),
                                 ("token_type_ids", e.type_ids))
        ]
    return json.dumps({"inputs": inputs})


lat, errors, lock = [], [0], threading.Lock()
stop = time.monotonic() + seconds


def worker(k):
    c = http.client.HTTPConnection(u.hostname, u.port)
    i, mine, bad = k, [], 0
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        c.request("POST", u.path, body(sentences[i % len(sentences)]),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            bad += 1
        mine.append(time.perf_counter() - t0)
        i += conc
    with lock:
        lat.extend(mine)
        errors[0] += bad


start = time.monotonic()
threads = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
for t in threads:
    t.start()
for t in threads:
    t.join()
took = time.monotonic() - start
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else 0.0
print(json.dumps({"per_s": len(lat) / took, "p50_ms": q(0.5), "p99_ms": q(0.99), "errors": errors[0]}))
