"""Scheduler outputs of N live jobs for the `poll` scenario, in the exact formats the plugins parse.

Each is built from one job record of the plugin's own recorded test fixtures (the record repeated
with the id changed), so what is timed is the plugin's real parser on real-format text:

- Slurm: ``squeue -h -o SQUEUE_STATUS_FORMAT`` lines (``id|STATE|reason``), the format constant
  taken from ``expyre_slurm.parse``;
- Torque: ``qstat -f`` records of ``plugins/expyre_pbs/tests/fixtures/torque/qstat_f_all_states.txt``;
- PBS Pro / OpenPBS: ``qstat -f -F json`` of ``.../pbspro/qstat_f_json_states.txt``;
- Grid Engine: ``qstat -xml`` ``<job_list>`` elements (an ``r`` and a ``qw`` job, no array) of the
  recorded ``plugins/expyre_sge/tests/data/qstat_xml_*.xml`` (SGE 8.1.9).

``outputs(kind, n, running)`` gives ``(ids, text)``: n jobs, the first ``running`` of them running,
the others queued. Imported by xpr_worker.py (the workspace's Python).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PBS_FIX = REPO / "plugins" / "expyre_pbs" / "tests" / "fixtures"
SGE_FIX = REPO / "plugins" / "expyre_sge" / "tests" / "data"
KINDS = ("slurm", "torque", "pbspro", "sge")


def _recorded(path: Path) -> str:
    """The stdout of a recorded fixture: after the `---` line that ends its `# key: value` header."""
    text = path.read_text()
    head, sep, body = text.partition("\n---\n")
    if not sep:
        raise ValueError(f"{path}: no '---' line after the header")
    return body


def _slurm(n: int, running: int) -> tuple[list[str], str]:
    from expyre_slurm.parse import SQUEUE_STATUS_FORMAT

    cols = SQUEUE_STATUS_FORMAT.split("|")
    ids = [str(1_000_000 + i) for i in range(n)]

    def line(jid: str, run: bool) -> str:
        val = {"%i": jid, "%T": "RUNNING" if run else "PENDING", "%t": "R" if run else "PD",
               "%r": "None" if run else "Priority"}
        return "|".join(val[c] for c in cols)

    return ids, "".join(line(j, k < running) + "\n" for k, j in enumerate(ids))


def _torque(n: int, running: int) -> tuple[list[str], str]:
    body = _recorded(PBS_FIX / "torque" / "qstat_f_all_states.txt")
    blocks = ["Job Id:" + b for b in body.split("Job Id:")[1:]]
    by_state = {}
    for b in blocks:
        m = re.search(r"^\s+job_state = (\S+)", b, re.M)
        if m and m.group(1) not in by_state and "[" not in b.splitlines()[0]:
            by_state[m.group(1)] = b.rstrip("\n") + "\n\n"
    server = blocks[0].splitlines()[0].split(":", 1)[1].strip().split(".", 1)[1]
    ids = [f"{1_000_000 + i}.{server}" for i in range(n)]
    first = re.compile(r"^Job Id: \S+")
    out = [first.sub(f"Job Id: {j}", by_state["R" if k < running else "Q"], 1) for k, j in enumerate(ids)]
    return ids, "".join(out)


def _pbspro(n: int, running: int) -> tuple[list[str], str]:
    doc = json.loads(_recorded(PBS_FIX / "pbspro" / "qstat_f_json_states.txt"))
    jobs = doc["Jobs"]
    tmpl = {}
    for jid, j in jobs.items():
        if "[" not in jid and j.get("job_state") in ("Q", "R") and j["job_state"] not in tmpl:
            tmpl[j["job_state"]] = j
    server = next(iter(jobs)).split(".", 1)[1]
    ids = [f"{1_000_000 + i}.{server}" for i in range(n)]
    doc = {k: v for k, v in doc.items() if k != "Jobs"}
    doc["Jobs"] = {j: copy.deepcopy(tmpl["R" if k < running else "Q"]) for k, j in enumerate(ids)}
    return ids, json.dumps(doc, indent=4) + "\n"


def _sge(n: int, running: int) -> tuple[list[str], str]:
    tmpl: dict[str, str] = {}
    head = ""
    for name in ("qstat_xml_appendix_a.xml", "qstat_xml_find.xml", "qstat_xml_states.xml"):
        text = (SGE_FIX / name).read_text()
        head = head or text[: text.index("<queue_info>")]
        for b in re.findall(r"(    <job_list state=\"\w+\">\n.*?    </job_list>\n)", text, re.S):
            st = re.search(r"<state>(\w+)</state>", b).group(1)
            if st in ("r", "qw") and st not in tmpl and "<tasks>" not in b:
                tmpl[st] = b
    ids = [str(1_000_000 + i) for i in range(n)]
    num = re.compile(r"<JB_job_number>\d+</JB_job_number>")
    run = [num.sub(f"<JB_job_number>{j}</JB_job_number>", tmpl["r"]) for j in ids[:running]]
    pend = [num.sub(f"<JB_job_number>{j}</JB_job_number>", tmpl["qw"]) for j in ids[running:]]
    return ids, (head + "<queue_info>\n" + "".join(run) + "  </queue_info>\n  <job_info>\n" + "".join(pend)
                 + "  </job_info>\n</job_info>\n")


def outputs(kind: str, n: int, running: int = 0) -> tuple[list[str], str]:
    if kind not in KINDS:
        raise ValueError(f"unknown scheduler output kind {kind!r}; choose from {KINDS}")
    return {"slurm": _slurm, "torque": _torque, "pbspro": _pbspro, "sge": _sge}[kind](n, running)
