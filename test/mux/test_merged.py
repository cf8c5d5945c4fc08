"""Fan-out: lists, stats, images, Status, Version, ImageFsInfo and
UpdateRuntimeConfig over every backend, compared with what each engine
answers itself (containerd's socket, a single-backend crisp for docker and
for podman)."""
import grpc
import pytest

from conftest import BACKENDS, handler_table
from crilib import as_dict, rpc_error, v1
from crisptest import wait_for

HANDLER_OF = {"containerd": "", "docker": "docker", "podman": "legacy"}


@pytest.fixture
def populated(pods):
    """A pod with a running container on each backend, and one with an
    exited container on containerd (so the lists hold more than one state)."""
    made = {}
    for b, h in HANDLER_OF.items():
        pid = pods.run(h, name="merged-%s" % b)
        made[b] = (pid, pods.create(pid, "run-" + b))
    pid = pods.run("fast", name="merged-fast")
    made["fast"] = (pid, pods.create(pid, "exits", ["true"]))
    wait_for(lambda: pods.c.rt("ContainerStatus", container_id=made["fast"][1]).status.state
             == v1.CONTAINER_EXITED, timeout=20, what="the container running `true` to exit")
    return made


def ids(items, attr="id"):
    out = []
    for x in items:
        out.append(getattr(x.attributes, "id") if attr == "attributes" else getattr(x, attr))
    return out


def union(refs, method, field, attr="id", **req):
    out = []
    for b in BACKENDS:
        out += ids(getattr(refs[b].rt(method, **req), field), attr)
    return out


def unmapped(envs, item):
    """A sandbox of the engine's own list as the mux shows it: the handler
    name in place of the engine's runtime name where crisp rewrites it."""
    d = as_dict(item)
    for h, (b, rt) in handler_table(envs).items():
        if b == "containerd" and rt and h != rt and d.get("runtimeHandler") == rt:
            d["runtimeHandler"] = h
    return d


def test_list_pod_sandbox_is_the_union(cri, refs, envs, populated):
    merged = cri.rt("ListPodSandbox").items
    assert sorted(ids(merged)) == sorted(union(refs, "ListPodSandbox", "items"))
    assert len(set(ids(merged))) == len(merged), "an ID twice"
    theirs = {}
    for b in BACKENDS:
        for it in refs[b].rt("ListPodSandbox").items:
            theirs[it.id] = unmapped(envs, it)
    for it in merged:
        assert as_dict(it) == theirs[it.id]
    pid = populated["fast"][0]
    assert [x.runtime_handler for x in merged if x.id == pid] == ["fast"]
    # filters other than an ID go to every backend
    sel = {"crisp-test": "1"}
    got = ids(cri.rt("ListPodSandbox", filter=v1.PodSandboxFilter(label_selector=sel)).items)
    assert sorted(got) == sorted(union(refs, "ListPodSandbox", "items",
                                       filter=v1.PodSandboxFilter(label_selector=sel)))
    for b, (pid, _) in populated.items():
        assert pid in got, b


def test_list_containers_is_the_union(cri, refs, populated):
    merged = cri.rt("ListContainers").containers
    assert sorted(ids(merged)) == sorted(union(refs, "ListContainers", "containers"))
    theirs = {c.id: as_dict(c) for b in BACKENDS for c in refs[b].rt("ListContainers").containers}
    for c in merged:
        assert as_dict(c) == theirs[c.id]
    running = v1.ContainerFilter(state=v1.ContainerStateValue(state=v1.CONTAINER_RUNNING))
    got = ids(cri.rt("ListContainers", filter=running).containers)
    assert sorted(got) == sorted(union(refs, "ListContainers", "containers", filter=running))
    assert populated["fast"][1] not in got
    for b in HANDLER_OF:
        assert populated[b][1] in got, b


def test_list_stats_are_the_union(cri, refs, populated):
    got = ids(cri.rt("ListContainerStats").stats, "attributes")
    assert sorted(got) == sorted(union(refs, "ListContainerStats", "stats", "attributes"))
    for b in HANDLER_OF:
        assert populated[b][1] in got, b
    got = ids(cri.rt("ListPodSandboxStats").stats, "attributes")
    assert sorted(got) == sorted(union(refs, "ListPodSandboxStats", "stats", "attributes"))
    for b in HANDLER_OF:
        assert populated[b][0] in got, b


def test_images(cri, refs, envs, engines):
    """Without a handler in the ImageSpec ("pull": "all", the default): lists
    are the union, an image is present only where every engine has it, pulls
    and removals reach every engine; with one, only its backend."""
    img = envs.VICTIM_IMAGE
    spec = v1.ImageSpec(image=img)
    for b in BACKENDS:
        try:
            refs[b].img("RemoveImage", image=spec)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, (b, e.details())
    merged = {i.id for i in cri.img("ListImages").images}
    assert merged == {i.id for b in BACKENDS for i in refs[b].img("ListImages").images}
    # in one engine only: the kubelet must pull (the pod may land anywhere)
    engines["docker"].pull(img)
    assert refs["docker"].img("ImageStatus", image=spec).image.id
    assert not cri.img("ImageStatus", image=spec).HasField("image")
    cri.img("PullImage", image=spec)
    for b in BACKENDS:
        assert refs[b].img("ImageStatus", image=spec).image.id, b
    st = cri.img("ImageStatus", image=spec)
    assert st.image.id == refs["containerd"].img("ImageStatus", image=spec).image.id
    cri.img("RemoveImage", image=spec)
    for b in BACKENDS:
        assert not refs[b].img("ImageStatus", image=spec).HasField("image"), b
    # a handler in the ImageSpec picks its backend
    cri.img("PullImage", image=v1.ImageSpec(image=img, runtime_handler="legacy"))
    assert [b for b in BACKENDS if refs[b].img("ImageStatus", image=spec).HasField("image")] == ["podman"]
    assert cri.img("ImageStatus", image=v1.ImageSpec(image=img, runtime_handler="legacy")).image.id
    cri.img("RemoveImage", image=v1.ImageSpec(image=img, runtime_handler="legacy"))
    assert not refs["podman"].img("ImageStatus", image=spec).HasField("image")
    code, msg = rpc_error(cri.img, "PullImage", image=v1.ImageSpec(image=img, runtime_handler="kata"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and '"kata"' in msg, (code, msg)
    # removing what no engine has: NOT_FOUND only if every engine says so
    codes = [outcome(refs[b].img, "RemoveImage", image=spec) for b in BACKENDS]
    want = grpc.StatusCode.NOT_FOUND if all(c == grpc.StatusCode.NOT_FOUND for c in codes) \
        else grpc.StatusCode.OK
    assert outcome(cri.img, "RemoveImage", image=spec) == want, codes


def outcome(fn, *a, **kw):
    try:
        fn(*a, **kw)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_image_fs_info_merges_the_filesystems(cri, refs):
    got = cri.img("ImageFsInfo")
    want = [refs[b].img("ImageFsInfo") for b in BACKENDS]
    assert len(got.image_filesystems) == sum(len(w.image_filesystems) for w in want)
    assert sorted(f.fs_id.mountpoint for f in got.image_filesystems) == \
        sorted(f.fs_id.mountpoint for w in want for f in w.image_filesystems)


def test_status_is_merged(cri, refs, envs):
    st = cri.rt("Status", verbose=True)
    conds = {c.type: (c.status, c.message) for c in st.status.conditions}
    assert conds == {"RuntimeReady": (True, ""), "NetworkReady": (True, "")}
    table = handler_table(envs)
    assert [h.name for h in st.runtime_handlers] == list(table)
    for b in ("docker", "podman"):
        assert any(k.startswith(b + "/") for k in st.info), sorted(st.info)
    assert any(k.startswith("containerd/") for k in st.info), sorted(st.info)
    # each engine's own answer is ready too
    for b in BACKENDS:
        own = {c.type: c.status for c in refs[b].rt("Status").status.conditions}
        assert own["RuntimeReady"] and own["NetworkReady"], (b, own)


def test_version_is_crisps(cri):
    v = cri.rt("Version", version="0.1.0")
    assert (v.runtime_name, v.runtime_api_version) == ("crisp", "v1")
    assert v.runtime_version and v.version


def test_update_runtime_config_reaches_every_backend(cri):
    cri.rt("UpdateRuntimeConfig", runtime_config=v1.RuntimeConfig(
        network_config=v1.NetworkConfig(pod_cidr="10.213.0.0/16")))


def test_runtime_config_is_the_default_backends(cri, refs):
    try:
        want = (grpc.StatusCode.OK, as_dict(refs["containerd"].rt("RuntimeConfig")))
    except grpc.RpcError as e:
        want = (e.code(), e.details())
    try:
        got = (grpc.StatusCode.OK, as_dict(cri.rt("RuntimeConfig")))
    except grpc.RpcError as e:
        got = (e.code(), e.details())
    assert got == want


def test_an_id_some_engine_cannot_answer_for_is_not_not_found(cri, refs):
    """NOT_FOUND only when every engine says NOT_FOUND: an ID one engine
    answers another error for ('..' makes dockerd answer a redirect) has no
    known owner, and the kubelet must not take it for gone."""
    for ident in ("..", "ghost-" + "0" * 20):
        answers = {}
        for b in BACKENDS:
            answers[b] = rpc_error(refs[b].rt, "ContainerStatus", container_id=ident)
        code, msg = rpc_error(cri.rt, "ContainerStatus", container_id=ident)
        others = [b for b, (c, _) in answers.items() if c != grpc.StatusCode.NOT_FOUND]
        if others:
            assert code == grpc.StatusCode.UNAVAILABLE, (ident, code, msg, answers)
            assert "backend %s" % others[0] in msg, (msg, answers)
        else:
            assert code == grpc.StatusCode.NOT_FOUND, (ident, code, msg)
