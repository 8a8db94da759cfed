# %% [markdown]
# # A tiny course notebook for the autograder tests
#
# Two exercises in the course's format: one plain function and one flow layer
# checked with `flowlib.checks`, each with visible and hidden tests.

# %%
import math

import torch

import flowlib.checks
import flowlib.notebook_helpers


# %% [solution] nb00_square
def square(x):
    """x squared."""
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION

# %% [tests] nb00_square_tests points=1
assert square(3) == 9, "square(3) should be 9"
flowlib.notebook_helpers.passed("Exercise 0.1 (square)")
### BEGIN HIDDEN TESTS
assert square(-2.5) == 6.25
### END HIDDEN TESTS

# %% [solution] nb00_scale
class Scale(torch.nn.Module):
    """The flow z = 2 x, elementwise."""

    def forward(self, x):
        ### BEGIN SOLUTION
        logdet = torch.full((x.shape[0],), x[0].numel() * math.log(2.0), dtype=x.dtype)
        return 2 * x, logdet
        ### END SOLUTION

    def inverse(self, z):
        ### BEGIN SOLUTION
        logdet = torch.full((z.shape[0],), -z[0].numel() * math.log(2.0), dtype=z.dtype)
        return z / 2, logdet
        ### END SOLUTION

# %% [tests] nb00_scale_tests points=2
flowlib.checks.check_flow(Scale(), torch.randn(4, 3, dtype=torch.float64))
flowlib.notebook_helpers.passed("Exercise 0.2 (scale)")
### BEGIN HIDDEN TESTS
import importlib; import flowlib.checks; _checks = importlib.reload(flowlib.checks)
_checks.check_flow(Scale(), torch.randn(2, 5, dtype=torch.float64))
### END HIDDEN TESTS

# %% [markdown]
# ## What we saw
#
# A function and a flow layer, both graded.
