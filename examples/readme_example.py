"""The README's example, verbatim: sum a numpy array in a job on the zero-config `local` system."""

import numpy as np
from expyre.func import ExPyRe

# input for function
array_to_sum = np.ones((100, 50))

# resources: run for max 1 hour on 1 node, on a bigmem partition node
res = {'max_time': '1h', 'n': (1, 'nodes'), 'partitions': '.*bigmem'}

# create a task to sum array over axis=1
xpr = ExPyRe('test_task', np.sum, args=[array_to_sum], kwargs={'axis': 1})

# submit job
xpr.start(resources=res, system_name='local')

# gather results
try:
    array_sum = xpr.get_results()
    assert np.max(np.abs(array_sum - [50.0] * 100)) == 0.0
    print('array_sum =', array_sum[:5], '... (100 values, all 50.0): OK')
except TimeoutError:
    print('job did not run in alloted time')

# mark as processed in jobs db in case of restarts
xpr.mark_processed()
