"""Students' answers to notebook 02 (dequantization, logit, bits per dimension)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

DEQ = "nb02_dequantize"
LOGIT = "nb02_logit"
BPD = "nb02_bpd"

FWD_LD = "torch.full((x.shape[0],), -x[0].numel() * math.log(self.n_bins), dtype=x.dtype, device=x.device)"
INV_LD = "torch.full((v.shape[0],), v[0].numel() * math.log(self.n_bins), dtype=v.dtype, device=v.device)"


def _deq(v="(x + self.noise(x)) / self.n_bins", logdet=FWD_LD,
         x="torch.floor(v * self.n_bins).clamp(0, self.n_bins - 1)", inverse_logdet=INV_LD):
    return {0: f"v = {v}\nlogdet = {logdet}\nreturn v, logdet",
            1: f"x = {x}\nlogdet = {inverse_logdet}\nreturn x, logdet"}


def _ld(value):
    return f"torch.full((x.shape[0],), {value}, dtype=x.dtype)"


LOGIT_FWD = "(math.log(1 - self.alpha) - torch.log(y) - torch.log1p(-y)).flatten(1).sum(1)"
LOGIT_INV = "(F.logsigmoid(z) + F.logsigmoid(-z) - math.log(1 - self.alpha)).flatten(1).sum(1)"


def _logit(forward=LOGIT_FWD, inverse=LOGIT_INV):
    return {0: f"logdet = {forward}", 1: f"logdet = {inverse}"}


CASES = [
    # Exercise 2.1
    Case(DEQ, "ones times a float", _deq(logdet="-x[0].numel() * math.log(self.n_bins) * torch.ones(x.shape[0], dtype=x.dtype)",
                                         inverse_logdet="v[0].numel() * math.log(self.n_bins) * torch.ones(v.shape[0], dtype=v.dtype)")),
    Case(DEQ, "n_bits log 2 and new_full", _deq(
        v="x / self.n_bins + self.noise(x) / self.n_bins",
        logdet="x.new_full((x.shape[0],), -math.prod(x.shape[1:]) * self.n_bits * math.log(2))",
        x="(v * self.n_bins).floor().clamp(min=0, max=self.n_bins - 1)",
        inverse_logdet="v.new_full((v.shape[0],), math.prod(v.shape[1:]) * self.n_bits * math.log(2))")),
    Case(DEQ, "round instead of floor", _deq(x="torch.round(v * self.n_bins).clamp(0, self.n_bins - 1)"),
         "inverse rounds to the nearest integer"),
    Case(DEQ, "no clamp", _deq(x="torch.floor(v * self.n_bins)"), "the result is not clamped"),
    Case(DEQ, "own noise", _deq(v="(x + torch.rand_like(x)) / self.n_bins"),
         "does not take its noise from self.noise(x)"),
    Case(DEQ, "log-det zero", _deq(logdet="torch.zeros(x.shape[0], dtype=x.dtype)",
                                   inverse_logdet="torch.zeros(v.shape[0], dtype=v.dtype)"), "it is zero"),
    Case(DEQ, "log-det positive", _deq(logdet=_ld("x[0].numel() * math.log(self.n_bins)"),
                                       inverse_logdet="-" + INV_LD), "it has the wrong sign"),
    Case(DEQ, "once per image", _deq(logdet=_ld("-math.log(self.n_bins)")), "for the whole image"),
    Case(DEQ, "in bits", _deq(logdet=_ld("-x[0].numel() * self.n_bits")), "it is in bits"),
    Case(DEQ, "not divided", _deq(v="x + self.noise(x)"), "Each v must lie in its pixel's bin"),
    Case(DEQ, "inverse log-det not negated", _deq(inverse_logdet="-" + INV_LD),
         "inverse returns the same log-det as forward"),
    # Exercise 2.2
    Case(LOGIT, "log of y(1 - y)", _logit(
        "(math.log(1 - self.alpha) - torch.log(y * (1 - y))).flatten(1).sum(1)",
        "(torch.log(y) + torch.log1p(-y) - math.log(1 - self.alpha)).flatten(1).sum(1)")),
    Case(LOGIT, "constant outside the sum", _logit(
        "(-torch.log(y) - torch.log(1 - y)).flatten(1).sum(1) + v[0].numel() * math.log(1 - self.alpha)",
        "-(math.log(1 - self.alpha) - torch.log(y) - torch.log1p(-y)).reshape(len(z), -1).sum(-1)")),
    Case(LOGIT, "squeeze term missing", _logit("(-torch.log(y) - torch.log1p(-y)).flatten(1).sum(1)"),
         "the squeeze's term is missing"),
    Case(LOGIT, "squeeze term with the wrong sign",
         _logit("(-math.log(1 - self.alpha) - torch.log(y) - torch.log1p(-y)).flatten(1).sum(1)"),
         "the squeeze's term has the wrong sign"),
    Case(LOGIT, "squeeze term once per sample",
         _logit("(-torch.log(y) - torch.log1p(-y)).flatten(1).sum(1) + math.log(1 - self.alpha)"),
         "added once per sample"),
    Case(LOGIT, "derivative at v", _logit("(math.log(1 - self.alpha) - torch.log(v) - torch.log1p(-v)).flatten(1).sum(1)"),
         "taken at v"),
    Case(LOGIT, "wrong sign", _logit("-" + LOGIT_FWD, "-" + LOGIT_INV), "the log-det has the wrong sign"),
    Case(LOGIT, "inverse log-det not negated", _logit(inverse="-" + LOGIT_INV),
         "inverse returns the same log-det as forward"),
    Case(LOGIT, "inverse without the squeeze", _logit(inverse="(F.logsigmoid(z) + F.logsigmoid(-z)).flatten(1).sum(1)"),
         "the squeeze's term is missing in inverse"),
    # Exercise 2.3
    Case(BPD, "n_bits minus", {0: "return n_bits - log_p_v / (n_dims * math.log(2))"}),
    Case(BPD, "bits first", {0: "return -(log_p_v / math.log(2) - n_dims * n_bits) / n_dims"}),
    Case(BPD, "no discretization term", {0: "return -log_p_v / (n_dims * math.log(2))"},
         "the discretization term -D*log(n_bins) is missing"),
    Case(BPD, "nats", {0: "return -(log_p_v - n_dims * n_bits * math.log(2)) / n_dims"}, "it is in nats per dimension"),
    Case(BPD, "per image", {0: "return -(log_p_v - n_dims * n_bits * math.log(2)) / math.log(2)"}, "it is per image"),
    Case(BPD, "term in bits", {0: "return -(log_p_v - n_dims * n_bits) / (n_dims * math.log(2))"},
         "counted in bits where nats are needed"),
    Case(BPD, "term with the wrong sign", {0: "return -(log_p_v + n_dims * n_bits * math.log(2)) / (n_dims * math.log(2))"},
         "the discretization term has the wrong sign"),
    Case(BPD, "positive log-likelihood", {0: "return (log_p_v - n_dims * n_bits * math.log(2)) / (n_dims * math.log(2))"},
         "bpd is the NEGATIVE log-likelihood"),
]
