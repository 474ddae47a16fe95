#!/usr/bin/env python3
"""The checks of hack/kubeadm-walkthrough.sh, on kubectl's JSON.

  control-plane NODE               stdin: pods of kube-system; the four mirror pods Running,
                                   Ready, 0 restarts
  node                             stdin: the Node; podvisor's taint, kubeadm's label and taint
  edited NODE OLD_HASH             stdin: pods; kube-apiserver is a new version (--v=1),
                                   Running, Ready, 0 restarts; the other three Running and Ready
                                   (their restarts are printed: see the README)
  running NODE                     stdin: pods; the four Running and Ready, restarts printed
  edit-local NODE OLD_HASH EDIT_T SNAPSHOTS
                                   what podvisor's own status API said of kube-apiserver
                                   while the edit was applied (printed, never fails)
  addons NODE OBSERVED EVENTS      CoreDNS Pending and unbound with the scheduler naming the
                                   taint; what happened to kube-proxy's daemon pods

Each prints what it saw and exits 1 when a check fails.
"""

import json
import sys
from datetime import datetime

COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
TAINT = "podvisor.dev/static-pods-only"


def fail(msg):
    print(f"CHECK FAILED: {msg}")
    sys.exit(1)


def condition(pod, kind):
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return {}


def restarts(pod):
    return sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses") or [])


def describe(pod):
    meta, status = pod["metadata"], pod.get("status", {})
    return (
        f"{meta['name']}: {status.get('phase')}, Ready={condition(pod, 'Ready').get('status')}, "
        f"restarts {restarts(pod)}, config.hash {meta.get('annotations', {}).get('kubernetes.io/config.hash', '')[:12]}, "
        f"mirror={'kubernetes.io/config.mirror' in meta.get('annotations', {})}"
    )


def healthy(pod, allow_restarts=False):
    status = pod.get("status", {})
    return (
        status.get("phase") == "Running"
        and condition(pod, "Ready").get("status") == "True"
        and (allow_restarts or restarts(pod) == 0)
        and "kubernetes.io/config.mirror" in pod["metadata"].get("annotations", {})
    )


def control_plane(node, pods, skip=(), allow_restarts=False):
    by_name = {p["metadata"]["name"]: p for p in pods}
    ok = True
    for c in COMPONENTS:
        if c in skip:
            continue
        pod = by_name.get(f"{c}-{node}")
        if pod is None:
            print(f"{c}-{node}: no mirror pod")
            ok = False
            continue
        print(describe(pod))
        ok = ok and healthy(pod, allow_restarts)
    return ok


def main():
    mode = sys.argv[1]
    if mode == "control-plane":
        if not control_plane(sys.argv[2], json.load(sys.stdin)["items"]):
            fail("the four mirror pods are not all Running, Ready, with 0 restarts")
    elif mode == "node":
        n = json.load(sys.stdin)
        taints = [f"{t['key']}:{t['effect']}" for t in n["spec"].get("taints") or []]
        ready = [c for c in n["status"].get("conditions") or [] if c["type"] == "Ready"]
        labels = sorted(k for k in n["metadata"].get("labels", {}) if "node-role" in k or "hostname" in k)
        print(f"Node {n['metadata']['name']}: taints {taints}, labels {labels}, Ready={ready[0]['status'] if ready else None}")
        if f"{TAINT}:NoSchedule" not in taints:
            fail(f"no {TAINT} taint")
        if "node-role.kubernetes.io/control-plane:NoSchedule" not in taints:
            fail("kubeadm's control-plane taint was not kept")
    elif mode == "edited":
        node, old, edited_at = sys.argv[2], sys.argv[3], float(sys.argv[4])
        pods = json.load(sys.stdin)["items"]
        api = [p for p in pods if p["metadata"]["name"] == f"kube-apiserver-{node}"]
        if not api:
            fail("no kube-apiserver mirror pod")
        pod = api[0]
        new = pod["metadata"].get("annotations", {}).get("kubernetes.io/config.hash")
        command = pod["spec"]["containers"][0].get("command", [])
        started = ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("running", {}).get("startedAt")
        started_at = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() if started else 0.0
        print(
            describe(pod) + f" (was {old[:12]}), --v=1 in its command: {'--v=1' in command}, "
            f"container started {started_at - edited_at:+.1f} s after the edit"
        )
        # The container must be the new one: until its status is written, the mirror pod of the
        # new version can still show the old container (see edit-local).
        if new == old or "--v=1" not in command or not healthy(pod) or started_at <= edited_at:
            fail("kube-apiserver is not the edited version, Running, Ready, with 0 restarts")
        # The old API server is stopped before the new one starts, as the kubelet does it; the
        # controller manager and the scheduler may lose their leader lease meanwhile and exit
        # (restarted by podvisor): they must be back, their restarts are only reported.
        if not control_plane(node, pods, skip=("kube-apiserver",), allow_restarts=True):
            fail("another control-plane pod is not Running and Ready after the edit")
    elif mode == "running":
        if not control_plane(sys.argv[2], json.load(sys.stdin)["items"], allow_restarts=True):
            fail("the four mirror pods are not all Running and Ready")
    elif mode == "edit-local":
        edit_local(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    elif mode == "addons":
        addons(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        fail(f"unknown mode {mode}")


def edit_local(node, old, edited_at, path):
    """Prints each change of what podvisor's status API said about kube-apiserver."""
    last = None
    for line in open(path):
        try:
            snap = json.loads(line)
        except ValueError:
            continue
        pods = snap["pods"] if isinstance(snap["pods"], list) else snap["pods"].get("pods", [])
        for p in pods:
            if p.get("name") != f"kube-apiserver-{node}":
                continue
            c = (p.get("containers") or [{}])[0]
            cid = (c.get("containerId") or c.get("container_id") or "")[-64:][:12]
            view = (
                "old" if p.get("hash") == old else "new",
                p.get("phase"),
                p.get("ready"),
                c.get("state"),
                cid,
                c.get("restarts"),
            )
            if view != last:
                print(
                    f"  +{snap['t'] - edited_at:5.1f} s podvisor status: {view[0]} version, phase {view[1]}, "
                    f"ready {view[2]}, container {view[4] or '-'} {view[3]}, restarts {view[5]}"
                )
                last = view


def addons(node, observed_path, events_path):
    snapshots = [json.loads(line) for line in open(observed_path) if line.strip()]
    if not snapshots:
        fail("no observations")
    t0, t1 = snapshots[0]["t"], snapshots[-1]["t"]
    ok = True

    # CoreDNS: Pending, never bound, the scheduler naming the taint.
    dns_bound = set()
    for s in snapshots:
        for p in s["items"]:
            if p["metadata"].get("labels", {}).get("k8s-app") == "kube-dns" and p["spec"].get("nodeName"):
                dns_bound.add(p["metadata"]["name"])
    final = [p for p in snapshots[-1]["items"] if p["metadata"].get("labels", {}).get("k8s-app") == "kube-dns"]
    print(f"CoreDNS: {len(final)} pods at the end; bound to a node during {t1 - t0:.0f} s of watching: {sorted(dns_bound) or 'none'}")
    for p in final:
        sched = condition(p, "PodScheduled")
        print(
            f"  {p['metadata']['name']}: {p['status'].get('phase')}, nodeName={p['spec'].get('nodeName')}, "
            f"PodScheduled={sched.get('status')} {sched.get('reason')}: {sched.get('message')}"
        )
        if p["status"].get("phase") != "Pending" or p["spec"].get("nodeName") or TAINT not in (sched.get("message") or ""):
            ok = False
    if not final or dns_bound:
        ok = False

    # kube-proxy: every daemon pod seen, how long it was bound and not yet Failed.
    seen = {}
    for s in snapshots:
        for p in s["items"]:
            if p["metadata"].get("labels", {}).get("k8s-app") != "kube-proxy":
                continue
            uid = p["metadata"]["uid"]
            e = seen.setdefault(uid, {"name": p["metadata"]["name"], "first": s["t"], "phases": [], "bound_pending": []})
            phase = p["status"].get("phase")
            if not e["phases"] or e["phases"][-1] != phase:
                e["phases"].append(phase)
            if p["spec"].get("nodeName") and phase == "Pending":
                e["bound_pending"].append(s["t"])
            e["reason"] = p["status"].get("reason")
            e["last"] = s["t"]
    print(f"kube-proxy: {len(seen)} daemon pods seen in {t1 - t0:.0f} s of snapshots about 1 s apart")
    longest = 0.0
    for e in sorted(seen.values(), key=lambda e: e["first"]):
        bp = e["bound_pending"]
        span = (bp[-1] - bp[0]) if bp else 0.0
        longest = max(longest, span)
        print(
            f"  +{e['first'] - t0:6.1f} s {e['name']}: {' -> '.join(str(x) for x in e['phases'])}"
            f" (reason {e.get('reason')}), seen until +{e['last'] - t0:.1f} s"
            + (f", bound and Pending in {len(bp)} snapshots" if bp else "")
        )
    # Left bound and Pending: the same pod bound and Pending across more than 5 s of snapshots.
    if longest > 5:
        print(f"  a kube-proxy pod stayed bound and Pending for {longest:.1f} s")
        ok = False
    final_proxy = [p for p in snapshots[-1]["items"] if p["metadata"].get("labels", {}).get("k8s-app") == "kube-proxy"]
    for p in final_proxy:
        if p["spec"].get("nodeName") and p["status"].get("phase") == "Pending":
            print(f"  at the end {p['metadata']['name']} is bound and Pending")

    # Events: what the DaemonSet controller and podvisor said, over the whole run.
    events = json.load(open(events_path))["items"] if events_path else []
    tally = {}
    for ev in events:
        obj = ev.get("involvedObject", {})
        name = obj.get("name", "")
        if not (name.startswith("kube-proxy") or name.startswith("coredns")):
            continue
        key = (obj.get("kind"), name if obj.get("kind") != "Pod" else name.rsplit("-", 1)[0] + "-*", ev.get("type"), ev.get("reason"))
        tally[key] = tally.get(key, 0) + (ev.get("count") or 1)
    print("events (kind, object, type, reason: count):")
    for (kind, name, typ, reason), n in sorted(tally.items()):
        print(f"  {kind} {name} {typ} {reason}: {n}")
    for reason in ("FailedScheduling", "StaticPodsOnly", "FailedDaemonPod"):
        for ev in events:
            if ev.get("reason") == reason:
                print(f"  e.g. {ev['involvedObject'].get('kind')} {reason}: {ev.get('message')}")
                break
    if not ok:
        fail("CoreDNS is not Pending and unbound with the taint named, or kube-proxy was left bound and Pending")


if __name__ == "__main__":
    main()
