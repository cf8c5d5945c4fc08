#!/usr/bin/python3
"""Runs a pod through crisp's socket and shows it: the same CRI calls a
kubelet makes (Version, PullImage, RunPodSandbox, CreateContainer,
StartContainer, ExecSync, ContainerStatus, ListPodSandbox) and the
container's log as the kubelet reads it. Leaves the pod running unless
--cleanup. Usage: demo_pod.py SOCKET BUSYBOX_IMAGE LOG_DIR [--cleanup]"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "integration"))
from crilib import CRIClient, v1  # noqa: E402


def main():
    sock, image, log_dir = sys.argv[1:4]
    cleanup = "--cleanup" in sys.argv
    c = CRIClient("unix://" + sock, "crisp")
    ver = c.rt("Version", v1.VersionRequest())
    print("crisp relays to %s %s (CRI %s)" % (ver.runtime_name, ver.runtime_version,
                                              ver.runtime_api_version))
    c.img("PullImage", v1.PullImageRequest(image=v1.ImageSpec(image=image)), timeout=120)
    uid = "demo-%d" % int(time.time())
    # one folder per pod, as the kubelet's /var/log/pods/<ns>_<name>_<uid>
    log_dir = os.path.join(log_dir, "default_crisp-demo_%s" % uid)
    os.makedirs(log_dir, exist_ok=True)
    pod_cfg = v1.PodSandboxConfig(
        metadata=v1.PodSandboxMetadata(name="crisp-demo", namespace="default", uid=uid),
        hostname="crisp-demo", log_directory=log_dir,
        labels={"app": "crisp-demo"})
    pod = c.rt("RunPodSandbox", v1.RunPodSandboxRequest(config=pod_cfg), timeout=240).pod_sandbox_id
    ctr_cfg = v1.ContainerConfig(
        metadata=v1.ContainerMetadata(name="hello"), image=v1.ImageSpec(image=image),
        command=["/bin/sh", "-c", "echo hello from a pod run through crisp; exec sleep 3600"],
        log_path="hello.log")
    ctr = c.rt("CreateContainer", v1.CreateContainerRequest(
        pod_sandbox_id=pod, config=ctr_cfg, sandbox_config=pod_cfg)).container_id
    c.rt("StartContainer", v1.StartContainerRequest(container_id=ctr))
    st = c.rt("PodSandboxStatus", v1.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
    print("pod       %s  state=%s ip=%s" % (pod[:13], v1.PodSandboxState.Name(st.state),
                                            st.network.ip))
    cs = c.rt("ContainerStatus", v1.ContainerStatusRequest(container_id=ctr)).status
    print("container %s  state=%s image=%s" % (ctr[:13], v1.ContainerState.Name(cs.state),
                                                cs.image.image))
    ex = c.rt("ExecSync", v1.ExecSyncRequest(container_id=ctr, cmd=["hostname"], timeout=10))
    print("exec 'hostname' -> %r (exit %d)" % (ex.stdout.decode().strip(), ex.exit_code))
    time.sleep(0.3)
    with open(os.path.join(log_dir, "hello.log")) as f:
        print("log line (kubelet format): %s" % f.readline().rstrip())
    pods = c.rt("ListPodSandbox", v1.ListPodSandboxRequest(
        filter=v1.PodSandboxFilter(label_selector={"app": "crisp-demo"}))).items
    print("ListPodSandbox app=crisp-demo: %d pod(s)" % len(pods))
    if cleanup:
        c.rt("StopPodSandbox", v1.StopPodSandboxRequest(pod_sandbox_id=pod))
        c.rt("RemovePodSandbox", v1.RemovePodSandboxRequest(pod_sandbox_id=pod))
        print("pod removed")


if __name__ == "__main__":
    main()
