"""Site policy plugin B: marks every job header, and rewrites the account line plugin A adds."""

import expyre


@expyre.hookimpl
def expyre_modify_header(system_name, job, header):
    header.append(f"# plugin-b saw {len(header)} lines on {system_name}")
    for i, line in enumerate(header):
        if line.startswith("# account="):
            header[i] = line + " (checked by b)"
