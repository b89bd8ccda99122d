"""`hone serve` as a child process for the client suites: free loopback
ports, wait until it answers, SIGTERM at the end, and the pass/fail summary.
Standard library only, so every suite's venv can import it."""

import os
import signal
import socket
import ssl
import subprocess
import time
import traceback
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class HoneServer:
    """Starts `hone serve` on `repo` with fresh HTTP, gRPC and metrics ports
    (metrics only when `metrics` is true); the log goes to WORK/hone.log."""

    def __init__(self, hone, repo, work, metrics=True, wait_path="/v2/health/live", extra=(), ca=None,
                 client_cert=None):
        """`extra`: more `hone serve` flags; `ca`: the ports speak TLS with a
        certificate signed by this CA file; `client_cert`: (cert, key) files
        the readiness wait presents (mutual TLS)."""
        self.http_port, self.grpc_port = free_port(), free_port()
        self.metrics_port = free_port() if metrics else None
        self.log_path = os.path.join(work, "hone.log")
        args = [hone, "serve", "--model-repository", repo, "--http-port", str(self.http_port),
                "--grpc-port", str(self.grpc_port)]
        args += ["--metrics-port", str(self.metrics_port)] if metrics else ["--no-metrics"]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        self.base = f"{'https' if ca else 'http'}://127.0.0.1:{self.http_port}"
        ctx = ssl.create_default_context(cafile=ca) if ca else None
        if ctx and client_cert:
            ctx.load_cert_chain(*client_cert)
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(self.base + wait_path, timeout=1, context=ctx)
                return
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise SystemExit(f"hone did not come up; log:\n{self.log()}")
                time.sleep(0.05)

    def log(self, tail=4000):
        with open(self.log_path) as f:
            return f.read()[-tail:]

    def stop(self):
        """SIGTERM, then the exit code (or "killed" after 30 s)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "killed"


def summary(results, server):
    """Prints the count and the failures (with the server log); the exit status."""
    failed = [n for n, e in results if e]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print("failed:", ", ".join(failed))
        print(server.log())
    return 1 if failed or not results else 0


def record(results, name, error):
    """Notes a check's outcome and prints it, with the traceback on failure."""
    results.append((name, error))
    if error is None:
        print(f"ok    {name}", flush=True)
    else:
        print(f"FAIL  {name}: {error!r}", flush=True)
        traceback.print_exception(error)


def check(results, name, fn):
    """Runs one check; every failure is recorded, none stops the run."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - reported, not raised
        record(results, name, e)
        return
    record(results, name, None)
