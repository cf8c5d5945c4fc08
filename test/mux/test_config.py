"""Configuration files crisp refuses at start: it exits non-zero before
listening, and the message names the file, the field and what is wrong.

An endpoint nobody answers on is not refused: an engine that is down (or
not started yet at boot) must not keep crisp from serving the others, nor
from restarting while it is down (test_backend_down.py restarts crisp during
an outage). crisp starts, logs a warning naming the file and the field,
reports the backend not ready in Status, and uses it as soon as it answers."""
import json
import os
import subprocess

import grpc
import pytest

from conftest import MUX_DIR, make_config, write_config
from crisptest import CRISP_ARGS, CRISP_BIN, CRISP_WRAPPER, WRAPPED, wait_for
from crilib import rpc_error

EXIT_TIMEOUT = 120 if WRAPPED else 15


def with_change(env, fn):
    cfg = make_config(env)
    fn(cfg)
    return cfg


def dup_key_text(env, section, key):
    """The file with one key of `section` given twice (JSON allows it on the
    wire; crisp must not silently take one)."""
    cfg = make_config(env)
    text = json.dumps(cfg, indent=1)
    entry = json.dumps({key: cfg[section][key]})[1:-1]
    return text.replace('"%s": {' % section, '"%s": {%s, ' % (section, entry), 1)


BAD = [
    ("unknown-kind", lambda e: with_change(e, lambda c: c["backends"]["podman"].update(kind="rkt")),
     r'backends.podman.kind: unknown kind \"rkt\" (known: cri, docker)'),
    ("duplicate-handler", lambda e: dup_key_text(e, "handlers", "docker"), r'handlers.\"docker\": given twice'),
    ("duplicate-backend", lambda e: dup_key_text(e, "backends", "docker"), r'backends.\"docker\": given twice'),
    ("handler-on-no-backend", lambda e: with_change(e, lambda c: c["handlers"].update(x={"backend": "kata"})),
     r'handlers.\"x\".backend: no backend named \"kata\"'),
    ("no-default-handler", lambda e: with_change(e, lambda c: c["handlers"].pop("")),
     r'handlers: the default handler \"\" is missing'),
    ("one-runtime-two-handlers", lambda e: with_change(
        e, lambda c: c["handlers"].update(plain={"backend": "containerd"})),
     r'handlers.\"plain\".runtime: \"\" is handler \"\"'),
    ("endpoint-not-a-string", lambda e: with_change(e, lambda c: c["backends"]["docker"].update(endpoint=2375)),
     "backends.docker.endpoint: want a string"),
    ("endpoint-missing", lambda e: with_change(e, lambda c: c["backends"]["docker"].pop("endpoint")),
     "backends.docker.endpoint: missing"),
    ("options-not-an-object", lambda e: with_change(e, lambda c: c["backends"]["docker"].update(options=[])),
     "backends.docker.options: want an object"),
    ("option-not-a-string", lambda e: with_change(
        e, lambda c: c["backends"]["docker"]["options"].update({"pod-infra-image": True})),
     "backends.docker.options.pod-infra-image: want a string"),
    ("option-of-another-kind", lambda e: with_change(
        e, lambda c: c["backends"]["containerd"].update(options={"pod-infra-image": "p"})),
     "backends.containerd.options.pod-infra-image: the cri backend has no such option"),
    ("runtime-not-a-string", lambda e: with_change(e, lambda c: c["handlers"]["docker"].update(runtime=1)),
     r'handlers.\"docker\".runtime: want a string'),
    ("handlers-not-an-object", lambda e: with_change(e, lambda c: c.update(handlers=["docker"])),
     "handlers: want an object"),
    ("backends-empty", lambda e: with_change(e, lambda c: c.update(backends={})),
     "backends: want an object naming at least one backend"),
    ("unknown-field", lambda e: with_change(e, lambda c: c["backends"]["docker"].update(tls={})),
     "backends.docker.tls: unknown field (known: kind, endpoint, options)"),
    ("bad-images", lambda e: with_change(e, lambda c: c.update(images={"pull": "some"})),
     r'images.pull: want \"all\" or \"default\", got \"some\"'),
    ("unsupported-endpoint", lambda e: with_change(
        e, lambda c: c["backends"]["containerd"].update(endpoint="http://localhost:10010")),
     "backends.containerd: unsupported address http://localhost:10010"),
    ("not-json", lambda e: json.dumps(make_config(e), indent=1).replace('"handlers"', 'handlers', 1),
     "not valid JSON (line "),
    ("empty", lambda e: "", "not valid JSON"),
]


def run_refused(path, extra=()):
    argv = CRISP_WRAPPER + [CRISP_BIN, "--listen", "unix://" + os.path.join(MUX_DIR, "refused.sock"),
                            "--config", path] + list(extra) + CRISP_ARGS
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=EXIT_TIMEOUT)
    return r.returncode, r.stderr.decode(errors="replace")


@pytest.mark.parametrize("name,make,want", BAD, ids=[b[0] for b in BAD])
def test_bad_configuration_refused_at_start(name, make, want, envs):
    path = write_config(os.path.join(MUX_DIR, "bad-%s.json" % name), make(envs))
    rc, err = run_refused(path)
    assert rc != 0, err
    line = [l for l in err.splitlines() if "startup_failed" in l]
    assert line, err
    assert (path + ": ") in line[0] and want in line[0], (want, line[0])
    assert not os.path.exists(os.path.join(MUX_DIR, "refused.sock")), "it listened"
    assert "sanitizer" not in err.lower() and "runtime error:" not in err


def test_missing_file_refused(envs):
    path = os.path.join(MUX_DIR, "does-not-exist.json")
    rc, err = run_refused(path)
    assert rc != 0 and (path + ": No such file or directory") in err, err


def test_config_and_backend_flags_exclude_each_other(envs):
    path = write_config(os.path.join(MUX_DIR, "good.json"), make_config(envs))
    rc, err = run_refused(path, ["--backend", "cri:unix://" + envs.CONTAINERD_SOCK])
    assert rc == 2 and "--config" in err and "--backend" in err, err


def test_unreachable_endpoint_is_served_and_used_once_it_answers(own_crisp, envs):
    late = os.path.join(envs.SOCK_DIR, "docker-late.sock")
    if os.path.lexists(late):
        os.unlink(late)
    cfg = make_config(envs)
    cfg["backends"]["docker"]["endpoint"] = "unix://" + late
    p = own_crisp("mux-late", cfg)
    text = p.wait_log(0, r"event=backend_unreachable ")
    line = [l for l in text.splitlines() if "backend_unreachable" in l][0]
    assert 'file="%s"' % p.config_path in line and 'field="backends.docker.endpoint"' in line, line
    assert late in line, line
    c = p.client
    st = c.rt("Status").status
    for cond in st.conditions:
        assert not cond.status and "backend docker" in cond.message and late in cond.message, cond
    code, msg = rpc_error(c.rt, "ListPodSandbox")
    assert code == grpc.StatusCode.UNAVAILABLE and "backend docker" in msg, (code, msg)
    # the engine appears where the file says: crisp uses it, no restart
    os.symlink(envs.DOCKER_SOCK, late)
    try:
        wait_for(lambda: all(x.status for x in c.rt("Status").status.conditions), timeout=30, interval=0.2,
                 what="Status ready once the endpoint answers")
        c.rt("ListPodSandbox")
    finally:
        os.unlink(late)
