"""Start and stop a real local Ray cluster for the tests and benchmarks: a head node and worker nodes on 127.0.0.1.

Each node is a ``ray start ... --block`` process of this interpreter's Ray,
run in a session of its own; stopping a node stops that process (SIGTERM,
then SIGKILL) and with it every Ray process of the node.  ``kill_node``
sends SIGKILL to a worker node's whole process group at once: a machine lost
mid-job.  Nothing else is touched (never ``ray stop``, which stops every Ray
cluster of the machine).

Run this file directly to start a two-node cluster by hand::

    python tests/ray_cluster.py
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RayCluster:
    """``with RayCluster(workers=1) as cluster: cluster.address`` — a head node plus ``workers`` worker nodes."""

    def __init__(self, workers=0, cpus=2, temp_dir=None):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus
        self.workers = workers
        self.temp_dir = temp_dir or tempfile.mkdtemp(prefix="activeft-ray-")
        self.nodes = []                                # Popen of each --block process, head first
        # The workers import activeft_label from this checkout, installed or not.
        path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS="", PYTHONPATH=path)

    def _start(self, args, name):
        log = open(os.path.join(self.temp_dir, f"{name}.log"), "w")
        proc = subprocess.Popen(RAY + ["start", *args, "--node-ip-address", "127.0.0.1", "--num-cpus",
                                       str(self.cpus), "--disable-usage-stats", "--block"],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        proc.log_path = log.name
        self.nodes.append(proc)
        return proc

    def _wait_started(self, proc, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = open(proc.log_path, errors="replace").read()
            if "Ray runtime started" in text:
                return
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"ray start did not come up in {timeout} s:\n{open(proc.log_path).read()[-3000:]}")

    def start(self):
        head = self._start(["--head", "--port", str(self.port), "--include-dashboard", "false",
                            "--temp-dir", self.temp_dir], "head")
        self._wait_started(head)
        for k in range(self.workers):
            self.add_worker()
        return self

    def add_worker(self):
        proc = self._start(["--address", self.address], f"worker{len(self.nodes)}")
        self._wait_started(proc)
        self.wait_for_nodes(len(self.nodes))
        return proc

    def wait_for_nodes(self, count, timeout=60):
        """Until the head reports ``count`` live nodes (a subprocess: the caller's own Ray state stays alone)."""
        code = ("import ray, time, sys; ray.init(address=sys.argv[1], logging_level='error', log_to_driver=False)\n"
                "deadline = time.monotonic() + float(sys.argv[3])\n"
                "while time.monotonic() < deadline:\n"
                "    if sum(n['Alive'] for n in ray.nodes()) >= int(sys.argv[2]): sys.exit(0)\n"
                "    time.sleep(0.5)\n"
                "sys.exit(1)")
        proc = subprocess.run([sys.executable, "-c", code, self.address, str(count), str(timeout)], env=self.env,
                              capture_output=True, text=True, timeout=timeout + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"the cluster did not reach {count} nodes: {proc.stderr[-2000:]}")

    @staticmethod
    def _signal(proc, sig):
        try:
            os.killpg(proc.pid, sig)          # the node's own session: its raylet, store and workers
        except ProcessLookupError:
            pass

    def kill_node(self, proc):
        """SIGKILL a node's whole process group: the machine is gone, nothing shuts down cleanly."""
        self._signal(proc, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self):
        for proc in reversed(self.nodes):
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
        for proc in reversed(self.nodes):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_node(proc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    with RayCluster(workers=1) as cluster:
        print(f"Ray cluster at {cluster.address} (temp dir {cluster.temp_dir}); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
