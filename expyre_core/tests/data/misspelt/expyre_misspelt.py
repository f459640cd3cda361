import expyre


@expyre.hookimpl
def expyre_register_schedulrs():  # misspelt on purpose
    return []
