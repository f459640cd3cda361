"""Site policy plugin A: appends an account line to every job header of the system "here"."""

import expyre


@expyre.hookimpl
def expyre_modify_header(system_name, job, header):
    if system_name == "here":
        header.append(f"# account=a-{job.nodes.tot_ncores}")
