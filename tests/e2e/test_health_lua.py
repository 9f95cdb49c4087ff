"""The Argo CD health check for Releases (charts/capstan/health/release.lua), run with a real
Lua interpreter (lua5.4, installed by `make deps`) on sample Release objects.

Needs no cluster. Argo CD runs the script as a chunk with a global `obj` (the live object
decoded from JSON) and reads the `hs` table it returns; the harness below does the same:
stock Lua has no JSON decoder, so each sample is written as a Lua table literal.

The samples follow what Capstan writes (rollout/rolling.cc SetConditions,
controller/release_controller.cc stall): Ready, Reconciling and Stalled conditions with
string statuses, status.observedGeneration, status.phase.
"""
import os
import shutil
import subprocess

import pytest

SRC = os.environ.get("CAPSTAN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.abspath(os.path.join(SRC, "charts", "capstan", "health", "release.lua"))
LUA = shutil.which("lua5.4")
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def lua_string(s):
    """A Lua string literal; every byte outside printable ASCII as a 3-digit decimal escape."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\' or b < 0x20 or b > 0x7E:
            out.append("\\%03d" % b)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def to_lua(v):
    """Python value (as json.loads would give) -> Lua literal: dicts and lists become tables."""
    if v is None:
        return "nil"
    if isinstance(v, bool):  # before int: bool is an int
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return lua_string(v)
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(to_lua(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join("[%s] = %s" % (lua_string(k), to_lua(x))
                               for k, x in v.items()) + "}"
    raise TypeError(f"no Lua literal for {type(v).__name__}")


def run_health(obj, tmp_path):
    """Runs release.lua on obj as Argo CD does; returns (hs.status, hs.message)."""
    if LUA is None:
        pytest.fail("lua5.4 not found: run `make deps` (APT_PACKAGES includes lua5.4)")
    harness = tmp_path / "harness.lua"
    harness.write_text(
        "obj = " + to_lua(obj) + "\n"
        "local hs = dofile(" + lua_string(SCRIPT) + ")\n"
        'assert(type(hs) == "table", "health script returned " .. type(hs))\n'
        'io.write(tostring(hs.status), "\\n", tostring(hs.message))\n')
    p = subprocess.run([LUA, str(harness)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"lua5.4 failed ({p.returncode}):\n{p.stderr}"
    status, _, message = p.stdout.partition("\n")
    return status, message


def release(generation=1, status=None):
    obj = {
        "apiVersion": "capstan.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "shop", "namespace": "default", "generation": generation},
        "spec": {"image": "registry.example/shop:1.2.3", "replicas": 3},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(type_, status, reason, message="", generation=1):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2024-05-01T12:00:00Z", "observedGeneration": generation}


def conditions(state, reason, message, generation=1, reconciling_reason=None,
               stalled_reason=None):
    """Ready, Reconciling and Stalled as Capstan sets them together: `state` (ready,
    reconciling or stalled) is the one that holds; Ready carries the message, and so does
    the condition that holds."""
    return [cond("Ready", "True" if state == "ready" else "False", reason, message, generation),
            cond("Reconciling", "True" if state == "reconciling" else "False",
                 reconciling_reason or reason, message if state == "reconciling" else "",
                 generation),
            cond("Stalled", "True" if state == "stalled" else "False", stalled_reason or reason,
                 message if state == "stalled" else "", generation)]


FAILED = "revision 7d9f1c2 failed: CrashLoopBackOff (pod shop-7d9f1c2-abcde restarted 5 times)"
CONFLICT = ("Service shop exists and is not owned by this Release; Capstan does not adopt "
            "objects it did not create. Delete or rename it, or rename the Release.")

# (id, Release, expected hs.status, substrings hs.message must contain)
PROMOTE = ("revision 9f3e1a2b7c is ready on green; promote it with: kubectl annotate release "
           "web capstan.dev/promote=9f3e1a2b7c --overwrite")

CASES = [
    ("ready", release(2, {
        "observedGeneration": 2, "phase": "Available", "message": "3/3 replicas ready",
        "conditions": conditions("ready", "Available", "3/3 replicas ready", 2)}),
     "Healthy", ["Available", "3/3 replicas ready"]),
    ("reconciling", release(2, {
        "observedGeneration": 2, "phase": "Progressing",
        "conditions": conditions("reconciling", "Progressing", "1/3 replicas updated", 2)}),
     "Progressing", ["Progressing", "1/3 replicas updated"]),
    # Conditions still say Ready, but for an older spec: not healthy until observed.
    ("generation-behind", release(3, {
        "observedGeneration": 2, "phase": "Available",
        "conditions": conditions("ready", "Available", "3/3 replicas ready", 2)}),
     "Progressing", ["generation 3", "observed 2"]),
    # A Stalled condition of an older generation does not make the new spec Degraded.
    ("generation-behind-stalled", release(4, {
        "observedGeneration": 3, "phase": "Stalled",
        "conditions": conditions("stalled", "Conflict", CONFLICT, 3)}),
     "Progressing", ["generation 4", "observed 3"]),
    # Automatic rollback: Ready reason RolledBack, Stalled reason RevisionFailed.
    ("rolled-back", release(5, {
        "observedGeneration": 5, "phase": "RolledBack", "message": FAILED,
        "failedRevision": "7d9f1c2", "stableRevision": "5b8e0a1",
        "conditions": conditions("stalled", "RolledBack", FAILED, 5,
                                 stalled_reason="RevisionFailed")}),
     "Degraded", ["RevisionFailed", FAILED]),
    ("conflict", release(1, {
        "observedGeneration": 1, "phase": "Stalled", "message": CONFLICT,
        "conditions": conditions("stalled", "Conflict", CONFLICT)}),
     "Degraded", ["Conflict", CONFLICT]),
    # BlueGreen waiting for a person to promote: Suspended, with the command to run.
    ("awaiting-promotion", release(2, {
        "observedGeneration": 2, "phase": "Previewing",
        "conditions": conditions("reconciling", "Previewing", PROMOTE, 2,
                                 reconciling_reason="AwaitingPromotion")}),
     "Suspended", ["AwaitingPromotion", "capstan.dev/promote=9f3e1a2b7c"]),
    # An inconclusive analysis paused the rollout: Suspended until promoted or aborted.
    ("analysis-inconclusive", release(2, {
        "observedGeneration": 2, "phase": "Paused",
        "conditions": conditions("reconciling", "AnalysisInconclusive", PROMOTE, 2,
                                 reconciling_reason="AnalysisInconclusive")}),
     "Suspended", ["AnalysisInconclusive", "capstan.dev/promote=9f3e1a2b7c"]),
    # An automatic promotion is only a matter of time: Progressing.
    ("auto-previewing", release(2, {
        "observedGeneration": 2, "phase": "Previewing",
        "conditions": conditions("reconciling", "Previewing", "traffic moves at ...", 2)}),
     "Progressing", ["Previewing"]),
    ("no-status", release(1), "Progressing", ["Waiting for Capstan"]),
    ("empty-status", release(1, {}), "Progressing", ["generation 1", "observed 0"]),
    # Not covered by the documented rules; the script's fallback is Progressing with the
    # Ready condition's reason and message.
    ("ready-false-only", release(1, {
        "observedGeneration": 1, "phase": "Pending",
        "conditions": [cond("Ready", "False", "Pending", "waiting for the first reconcile")]}),
     "Progressing", ["Pending", "waiting for the first reconcile"]),
    ("stalled-without-message", release(1, {
        "observedGeneration": 1,
        "conditions": [{"type": "Stalled", "status": "True"}]}),
     "Degraded", ["Stalled"]),
]


@pytest.mark.parametrize("obj,want_status,want_in_message",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_release_health(obj, want_status, want_in_message, tmp_path):
    status, message = run_health(obj, tmp_path)
    assert status in ARGO_STATUSES
    assert status == want_status, message
    for s in want_in_message:
        assert s in message, f"{s!r} not in health message {message!r}"


def test_lua_literal_round_trip(tmp_path):
    """The converter's escapes survive Lua: quotes, backslashes, newlines, non-ASCII."""
    if LUA is None:
        pytest.fail("lua5.4 not found: run `make deps`")
    tricky = 'a "q" \\ b\nc\t\u00e9\u2713 1'
    harness = tmp_path / "lit.lua"
    harness.write_text("local t = " + to_lua({"s": tricky, "n": [1, 2.5, True]}) + "\n"
                       "io.write(t.s, '|', #t.n, '|', tostring(t.n[3]))\n")
    p = subprocess.run([LUA, str(harness)], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode("utf-8") == tricky + "|3|true"
