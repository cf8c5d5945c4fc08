"""Pod sandbox lifecycle: RunPodSandbox, PodSandboxStatus, ListPodSandbox
(filters), StopPodSandbox, RemovePodSandbox; sandbox stats."""
import ipaddress

import grpc

from crilib import as_dict, rpc_error


def pod_ids(resp):
    return sorted(p.id for p in resp.items)


def test_pod_lifecycle(cri, pods, testenv):
    pb = cri.pb
    pid, cfg = pods.run_pod(labels={"app": "lifecycle"})
    assert len(pid) == 64

    st = cri.rt("PodSandboxStatus", pod_sandbox_id=pid)
    s = st.status
    assert s.id == pid
    assert s.state == pb.SANDBOX_READY
    assert s.metadata == cfg.metadata
    assert s.labels["app"] == "lifecycle"
    assert s.annotations["crisp-test/annotation"] == "yes"
    assert s.created_at > 0
    assert s.network.ip and ipaddress.ip_address(s.network.ip) in ipaddress.ip_network(testenv.SUBNET)
    assert s.linux.namespaces.options.network == pb.POD
    assert not st.info

    verbose = cri.rt("PodSandboxStatus", pod_sandbox_id=pid, verbose=True)
    assert verbose.status == s
    assert "info" in verbose.info and '"pid"' in verbose.info["info"]

    cri.rt("StopPodSandbox", pod_sandbox_id=pid)
    assert cri.rt("PodSandboxStatus", pod_sandbox_id=pid).status.state == pb.SANDBOX_NOTREADY
    cri.rt("StopPodSandbox", pod_sandbox_id=pid)  # idempotent

    cri.rt("RemovePodSandbox", pod_sandbox_id=pid)
    code, details = rpc_error(cri.rt, "PodSandboxStatus", pod_sandbox_id=pid)
    assert code == grpc.StatusCode.NOT_FOUND
    assert pid not in pod_ids(cri.rt("ListPodSandbox"))
    cri.rt("RemovePodSandbox", pod_sandbox_id=pid)  # idempotent
    pods.forget_pod(pid)


def test_list_pod_sandbox_filters(cri, pods):
    pb = cri.pb
    a, acfg = pods.run_pod(labels={"role": "a", "grp": "x"})
    b, _ = pods.run_pod(labels={"role": "b", "grp": "x"})
    cri.rt("StopPodSandbox", pod_sandbox_id=b)

    mine = {a, b}
    all_ids = set(pod_ids(cri.rt("ListPodSandbox")))
    assert mine <= all_ids

    def lst(**f):
        return pod_ids(cri.rt("ListPodSandbox", filter=pb.PodSandboxFilter(**f)))

    assert lst(id=a) == [a]
    assert lst(id=a[:12]) == [a]                # containerd accepts an id prefix
    assert lst(id="0" * 64) == []
    assert [i for i in lst(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)) if i in mine] == [a]
    assert [i for i in lst(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)) if i in mine] == [b]
    assert lst(label_selector={"role": "b", "crisp-test/client": cri.name, "crisp-test/uid": acfg.labels["crisp-test/uid"]}) == []
    assert lst(label_selector={"role": "a", "crisp-test/client": cri.name}) == \
        sorted(i for i in [a] + [x for x in lst(label_selector={"role": "a", "crisp-test/client": cri.name}) if x != a])
    assert sorted(set(lst(label_selector={"grp": "x"})) & mine) == sorted(mine)
    assert lst(id=b, state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)) == []

    # the listed item carries the sandbox's metadata, labels and annotations
    item = cri.rt("ListPodSandbox", filter=pb.PodSandboxFilter(id=a)).items[0]
    assert item.metadata == acfg.metadata
    assert item.labels["role"] == "a"
    assert item.state == pb.SANDBOX_READY
    assert item.runtime_handler == ""


def test_pod_sandbox_stats(cri, pods):
    pid, cfg = pods.run_pod()
    r = cri.rt("PodSandboxStats", pod_sandbox_id=pid)
    assert r.stats.attributes.id == pid
    assert r.stats.attributes.metadata == cfg.metadata
    lst = cri.rt("ListPodSandboxStats", filter=cri.pb.PodSandboxStatsFilter(id=pid))
    assert [s.attributes.id for s in lst.stats] == [pid]


def test_pod_same_answer(both, direct_pods):
    pid, _ = direct_pods.run_pod()
    d = both.direct.rt("PodSandboxStatus", pod_sandbox_id=pid, verbose=True)
    c = both.crisp.rt("PodSandboxStatus", pod_sandbox_id=pid, verbose=True)
    assert c == d
    f = both.direct.pb.PodSandboxFilter(id=pid)
    assert both.crisp.rt("ListPodSandbox", filter=f) == both.direct.rt("ListPodSandbox", filter=f)
