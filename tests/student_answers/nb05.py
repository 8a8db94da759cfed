"""Students' answers to notebook 05 (ActNorm, the dense and the LU 1x1 convolution)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

ACTNORM = "nb05_actnorm"
CONV = "nb05_conv1x1"
LU = "nb05_lu_weight"

INIT = """mean = x.mean(dim=(0, 2, 3), keepdim=True)
std = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
self.bias.copy_({bias})
self.log_scale.copy_({log_scale})
{flag}"""
FWD = """{check}
z = (x + self.bias) * torch.exp(self.log_scale)
logdet = {logdet}
return z, logdet.expand(x.shape[0])"""
INV = """x = {x}
logdet = -z.shape[2] * z.shape[3] * self.log_scale.sum()
return x, logdet.expand(z.shape[0])"""


def _actnorm(bias="-mean", log_scale="-torch.log(std + self.eps)", flag="self.initialized.fill_(True)",
             check="if not bool(self.initialized):\n    self.initialize(x)",
             logdet="x.shape[2] * x.shape[3] * self.log_scale.sum()",
             x="z * torch.exp(-self.log_scale) - self.bias"):
    return {0: INIT.format(bias=bias, log_scale=log_scale, flag=flag), 1: FWD.format(check=check, logdet=logdet),
            2: INV.format(x=x)}


CONV_FWD = """c, (h, w) = self.channels, x.shape[2:]
z = F.conv2d(x, {weight}.view(c, c, 1, 1))
logdet = {logdet}
return z, logdet.expand(x.shape[0])"""
CONV_INV = """c, (h, w) = self.channels, z.shape[2:]
w_inv = {w_inv}
x = F.conv2d(z, w_inv.view(c, c, 1, 1))
logdet = {logdet}
return x, logdet.expand(z.shape[0])"""


def _conv(weight="self.weight", logdet="h * w * torch.linalg.slogdet(self.weight)[1]",
          w_inv="torch.linalg.inv(self.weight.double()).to(z.dtype)",
          inverse_logdet="-h * w * torch.linalg.slogdet(self.weight)[1]"):
    return {0: CONV_FWD.format(weight=weight, logdet=logdet), 1: CONV_INV.format(w_inv=w_inv, logdet=inverse_logdet)}


LU_BODY = """eye = torch.eye(len(log_s), dtype=lower.dtype, device=lower.device)
L = {L}
U = {U}
return {W}, {lad}"""


def _lu(L="torch.tril(lower, -1) + eye", U="torch.triu(upper, 1) + torch.diag(sign_s * torch.exp(log_s))",
        W="p @ L @ U", lad="log_s.sum()"):
    return {0: LU_BODY.format(L=L, U=U, W=W, lad=lad)}


CASES = [
    # Exercise 5.1
    Case(ACTNORM, "unbiased std and ones", {
        0: """self.bias.data.copy_(-x.mean(dim=(0, 2, 3), keepdim=True))
self.log_scale.data.copy_(-torch.log(x.std(dim=(0, 2, 3), keepdim=True) + self.eps))
self.initialized.fill_(True)""",
        1: """if not self.initialized:
    self.initialize(x)
z = (x + self.bias) * self.log_scale.exp()
return z, self.log_scale.sum() * x.shape[2] * x.shape[3] * torch.ones(x.shape[0], dtype=x.dtype)""",
        2: """x = z / self.log_scale.exp() - self.bias
return x, -(self.log_scale.sum() * z.shape[2] * z.shape[3]).repeat(z.shape[0])"""}),
    Case(ACTNORM, "variance and numel", _actnorm(
        log_scale="-0.5 * torch.log(x.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + self.eps ** 2)",
        logdet="x[0, 0].numel() * self.log_scale.sum()")),
    Case(ACTNORM, "height squared", _actnorm(logdet="x.shape[2] * x.shape[2] * self.log_scale.sum()"),
         "the images here are not square"),
    Case(ACTNORM, "no h*w", _actnorm(logdet="self.log_scale.sum()"), "log-det off by a factor h*w"),
    Case(ACTNORM, "bias with the wrong sign", _actnorm(bias="mean"), "set bias = -(mean of each channel"),
    Case(ACTNORM, "log-scale with the wrong sign", _actnorm(log_scale="torch.log(std + self.eps)"),
         "set log_scale = -log(std + eps)"),
    Case(ACTNORM, "initialises every batch", _actnorm(check="self.initialize(x)"), "initialised itself again"),
    Case(ACTNORM, "flag never set", _actnorm(flag="pass"), "set the flag"),
    Case(ACTNORM, "replaces the parameters", {0: """mean = x.mean(dim=(0, 2, 3), keepdim=True)
std = x.std(dim=(0, 2, 3), keepdim=True)
self.bias = nn.Parameter(-mean)
self.log_scale = nn.Parameter(-torch.log(std + self.eps))
self.initialized.fill_(True)"""}, "initialize replaced the parameters"),
    Case(ACTNORM, "inverse adds the bias", _actnorm(x="z * torch.exp(-self.log_scale) + self.bias"),
         "inverse does not undo forward"),
    Case(ACTNORM, "inverse in the wrong order", _actnorm(x="(z - self.bias) * torch.exp(-self.log_scale)"),
         "inverse does not undo forward"),
    # Exercise 5.2
    Case(CONV, "einsum and solve in float64", {
        0: """z = torch.einsum("oc,bchw->bohw", self.weight, x)
return z, (x.shape[2] * x.shape[3] * torch.slogdet(self.weight).logabsdet).repeat(x.shape[0])""",
        1: """b, c, h, w = z.shape
flat = z.double().permute(1, 0, 2, 3).reshape(c, -1)
x = torch.linalg.solve(self.weight.double(), flat).reshape(c, b, h, w).permute(1, 0, 2, 3).to(z.dtype)
return x, (-h * w * torch.slogdet(self.weight).logabsdet).repeat(b)"""}),
    Case(CONV, "Tensor.inverse in float64", _conv(w_inv="self.weight.double().inverse().to(z.dtype)",
                                                  logdet="torch.linalg.slogdet(self.weight).logabsdet * (h * w)")),
    Case(CONV, "logdet", _conv(logdet="h * w * torch.logdet(self.weight)", inverse_logdet="-h * w * torch.logdet(self.weight)"),
         "torch.logdet(W) is NaN for a negative determinant"),
    Case(CONV, "det without the log", _conv(logdet="h * w * torch.linalg.det(self.weight)",
                                            inverse_logdet="-h * w * torch.linalg.det(self.weight)"), "not h*w*det W"),
    Case(CONV, "no h*w", _conv(logdet="torch.linalg.slogdet(self.weight)[1]",
                               inverse_logdet="-torch.linalg.slogdet(self.weight)[1]"), "log-det off by a factor h*w"),
    Case(CONV, "inverted in float32", _conv(w_inv="torch.linalg.inv(self.weight)"), "inverse inverted W in float32"),
    Case(CONV, "float64 inverse not cast back", _conv(w_inv="torch.linalg.inv(self.weight.double())"),
         "cast W^-1 back"),
    Case(CONV, "transposed weight", _conv(weight="self.weight.t()",
                                          w_inv="torch.linalg.inv(self.weight.double()).t().to(z.dtype)"),
         "forward should mix the channels at every pixel"),
    Case(CONV, "detached weight", _conv(weight="self.weight.detach()",
                                        logdet="h * w * torch.linalg.slogdet(self.weight.detach())[1]"),
         "does not depend on self.weight"),
    Case(CONV, "inverse log-det not negated", _conv(inverse_logdet="h * w * torch.linalg.slogdet(self.weight)[1]"),
         "inverse returns the same log-det as forward"),
    # Exercise 5.3
    Case(LU, "tril, diag_embed, sum(0)", _lu(L="lower.tril(-1) + eye", U="upper.triu(1) + torch.diag_embed(sign_s * log_s.exp())",
                                           W="p @ (L @ U)", lad="torch.sum(log_s, 0)")),
    Case(LU, "multi_dot and masks", _lu(L="lower * torch.tril(torch.ones_like(lower), -1) + eye",
                                        U="upper * torch.triu(torch.ones_like(upper), 1) + torch.diag(sign_s * torch.exp(log_s))",
                                        W="torch.linalg.multi_dot([p, L, U])")),
    Case(LU, "slogdet", _lu(lad="torch.linalg.slogdet(p @ L @ U)[1]"), "without slogdet or det"),
    Case(LU, "log of det", _lu(lad="torch.log(torch.abs(torch.det(p @ L @ U)))"), "without slogdet or det"),
    Case(LU, "lower used whole", _lu(L="lower"), "`lower` is used whole"),
    Case(LU, "L without ones", _lu(L="torch.tril(lower, -1)"), "L needs ones on its diagonal"),
    Case(LU, "upper used whole", _lu(U="upper + torch.diag(sign_s * torch.exp(log_s))"), "`upper` is used whole"),
    Case(LU, "signs missing", _lu(U="torch.triu(upper, 1) + torch.diag(torch.exp(log_s))"), "the fixed signs are missing"),
    Case(LU, "log_s not exponentiated", _lu(U="torch.triu(upper, 1) + torch.diag(sign_s * log_s)"),
         "exponentiate it"),
    Case(LU, "wrong order", _lu(W="L @ U @ p"), "the order is W = P @ L @ U"),
    Case(LU, "sum of exp", _lu(lad="torch.exp(log_s).sum()"), "log_abs_det sums exp(log_s)"),
    Case(LU, "negative", _lu(lad="-log_s.sum()"), "log_abs_det has the wrong sign"),
]
