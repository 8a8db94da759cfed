"""Students' answers to notebook 01 (change of variables)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

PUSH = "nb01_pushforward"
AFFINE = "nb01_affine"
SIGMOID = "nb01_sigmoid"


def _affine(forward_logdet, inverse_logdet, z="x * torch.exp(self.log_scale) + self.shift",
            x="(z - self.shift) * torch.exp(-self.log_scale)"):
    return {0: f"z = {z}\nlogdet = {forward_logdet}\nreturn z, logdet",
            1: f"x = {x}\nlogdet = {inverse_logdet}\nreturn x, logdet"}


def _sigmoid(forward_logdet, inverse_logdet, inverse_x="torch.log(z) - torch.log1p(-z)"):
    return {0: f"z = torch.sigmoid(x)\nlogdet = {forward_logdet}\nreturn z, logdet",
            1: f"x = {inverse_x}\nlogdet = {inverse_logdet}\nreturn x, logdet"}


SIG_FWD = "(F.logsigmoid(x) + F.logsigmoid(-x)).flatten(1).sum(1)"
SIG_INV = "-(torch.log(z) + torch.log1p(-z)).flatten(1).sum(1)"

CASES = [
    # Exercise 1.1
    Case(PUSH, "abs method", {0: "return base_log_prob(f(x)) + torch.log(df_dx(x).abs())"}),
    Case(PUSH, "half log of the square", {0: "z = f(x)\nreturn base_log_prob(z) + 0.5 * torch.log(df_dx(x) ** 2)"}),
    Case(PUSH, "torch.add", {0: "return torch.add(base_log_prob(f(x)), df_dx(x).abs().log())"}),
    Case(PUSH, "no log-det term", {0: "return base_log_prob(f(x))"}, "the log|f'(x)| term is missing"),
    Case(PUSH, "log-det subtracted", {0: "return base_log_prob(f(x)) - torch.log(torch.abs(df_dx(x)))"},
         "wrong sign"),
    Case(PUSH, "base at x", {0: "return base_log_prob(x) + torch.log(torch.abs(df_dx(x)))"},
         "evaluated at x instead of at z = f(x)"),
    Case(PUSH, "no log of the derivative", {0: "return base_log_prob(f(x)) + torch.abs(df_dx(x))"},
         "without the log"),
    Case(PUSH, "no absolute value", {0: "return base_log_prob(f(x)) + torch.log(df_dx(x))"},
         "f'(x) < 0; the formula uses |f'(x)|"),
    Case(PUSH, "the density, not its log", {0: "return base_log_prob(f(x)).exp() * torch.abs(df_dx(x))"},
         "the density p_X(x), not its log"),
    # Exercise 1.2
    Case(AFFINE, "float32 zeros plus the sum",
         _affine("torch.zeros(x.shape[0]) + self.log_scale.sum()", "torch.zeros(z.shape[0]) - self.log_scale.sum()")),
    Case(AFFINE, "float32 ones times the sum",
         _affine("self.log_scale.sum() * torch.ones(x.shape[0])", "-self.log_scale.sum() * torch.ones(z.shape[0])")),
    Case(AFFINE, "per-entry sum", _affine("(self.log_scale * torch.ones_like(x)).flatten(1).sum(1)",
                                          "-(self.log_scale * torch.ones_like(z)).flatten(1).sum(1)")),
    Case(AFFINE, "repeat", _affine("self.log_scale.sum().repeat(x.shape[0])",
                                   "(-self.log_scale.sum()).repeat(z.shape[0])",
                                   x="(z - self.shift) / torch.exp(self.log_scale)")),
    Case(AFFINE, "inverse in the wrong order",
         _affine("self.log_scale.sum().expand(x.shape[0])", "-self.log_scale.sum().expand(z.shape[0])",
                 x="z * torch.exp(-self.log_scale) - self.shift"),
         "first subtract the shift, then divide by exp(log_scale)"),
    Case(AFFINE, "forward log-det negative",
         _affine("-self.log_scale.sum().expand(x.shape[0])", "self.log_scale.sum().expand(z.shape[0])"),
         "wrong sign"),
    Case(AFFINE, "log-det of shape (batch, 1)",
         _affine("self.log_scale.sum().expand(x.shape[0], 1)", "-self.log_scale.sum().expand(z.shape[0], 1)"),
         "logdet must have shape (batch,)"),
    Case(AFFINE, "log-det through item",
         _affine("torch.full((x.shape[0],), self.log_scale.sum().item())",
                 "torch.full((z.shape[0],), -self.log_scale.sum().item())"),
         "not connected to log_scale"),
    Case(AFFINE, "mean instead of sum",
         _affine("self.log_scale.mean().expand(x.shape[0])", "-self.log_scale.mean().expand(z.shape[0])"),
         "times the true value"),
    Case(AFFINE, "inverse log-det not negated",
         _affine("self.log_scale.sum().expand(x.shape[0])", "self.log_scale.sum().expand(z.shape[0])"),
         "inverse returns the same log-det as forward"),
    Case(AFFINE, "forward computes the inverse map",
         _affine("-self.log_scale.sum().expand(x.shape[0])", "self.log_scale.sum().expand(z.shape[0])",
                 z="(x - self.shift) * torch.exp(-self.log_scale)", x="z * torch.exp(self.log_scale) + self.shift"),
         "forward computes the inverse map"),
    # Exercise 1.3
    Case(SIGMOID, "log of s(1 - s)", _sigmoid("torch.log(torch.sigmoid(x) * (1 - torch.sigmoid(x))).flatten(1).sum(1)",
                                             "-torch.log(z * (1 - z)).flatten(1).sum(1)",
                                             inverse_x="torch.log(z / (1 - z))")),
    Case(SIGMOID, "softplus and torch.logit", _sigmoid("(-F.softplus(-x) - F.softplus(x)).reshape(len(x), -1).sum(-1)",
                                                      "-(torch.log(z) + torch.log(1 - z)).reshape(len(z), -1).sum(-1)",
                                                      inverse_x="torch.logit(z)")),
    Case(SIGMOID, "only log sigmoid", _sigmoid("F.logsigmoid(x).flatten(1).sum(1)", SIG_INV),
         "only log(sigmoid(x)) is summed"),
    Case(SIGMOID, "no log", _sigmoid("(torch.sigmoid(x) * torch.sigmoid(-x)).flatten(1).sum(1)", SIG_INV),
         "without the log"),
    Case(SIGMOID, "wrong sign", _sigmoid("-" + SIG_FWD, "-" + SIG_INV), "the log-det has the wrong sign"),
    Case(SIGMOID, "summed over the batch too", _sigmoid("(F.logsigmoid(x) + F.logsigmoid(-x)).sum()", SIG_INV),
         "expected shape (6,)"),
    Case(SIGMOID, "summed over dim 1 only", _sigmoid("(F.logsigmoid(x) + F.logsigmoid(-x)).sum(1)",
                                                     "-(torch.log(z) + torch.log1p(-z)).sum(1)"),
         "logdet must have shape (batch,)"),
    Case(SIGMOID, "wrong logit", _sigmoid(SIG_FWD, SIG_INV, inverse_x="torch.log(z) - torch.log1p(z)"),
         "Not invertible"),
    Case(SIGMOID, "inverse log-det not negated",
         _sigmoid(SIG_FWD, "(torch.log(z) + torch.log1p(-z)).flatten(1).sum(1)"),
         "inverse returns the same log-det as forward"),
]
