"""Students' answers to notebook 04 (squeeze, split, the multi-scale flow)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

SQUEEZE = "nb04_squeeze"
SPLIT = "nb04_split"
MULTI = "nb04_multiscale"

UNSQUEEZE = """b, c, h, w = z.shape
z = z.reshape(b, c // 4, 2, 2, h, w)
return z.permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)"""


def _squeeze(body, unsqueeze=UNSQUEEZE):
    return {0: body, 1: unsqueeze}


def _permuted(order):
    return f"""b, c, h, w = x.shape
x = x.reshape(b, c, h // 2, 2, w // 2, 2)
return x.permute({order}).reshape(b, 4 * c, h // 2, w // 2)"""


SPLIT_FWD = """a, b = x.chunk(2, dim=1)
mean, log_sd = self.mean_and_log_sd(a)
return torch.cat([a, {b}], dim=1), {logdet}"""
SPLIT_INV = """a, b = z.chunk(2, dim=1)
mean, log_sd = self.mean_and_log_sd(a)
return torch.cat([a, {b}], dim=1), {logdet}"""


def _split(b="(b - mean) * torch.exp(-log_sd)", logdet="-log_sd.flatten(1).sum(1)",
           inverse_b="b * torch.exp(log_sd) + mean", inverse_logdet="log_sd.flatten(1).sum(1)"):
    return {0: SPLIT_FWD.format(b=b, logdet=logdet), 1: SPLIT_INV.format(b=inverse_b, logdet=inverse_logdet)}


MS_FWD = """h, logdet1 = self.level1(v)
h, logdet_split = self.split(h)
{z1}
z2, logdet2 = self.level2({h})
return [z1, z2], {logdet}"""
MS_INV = """z1, z2 = latents
h, logdet2 = self.level2.inverse(z2)
h, logdet_split = self.split.inverse(torch.cat([h, {z1}], dim=1))
v, logdet1 = self.level1.inverse(h)
return v, logdet1 + logdet_split + logdet2"""


def _multi(z1="h, z1 = h.chunk(2, dim=1)", h="h", logdet="logdet1 + logdet_split + logdet2", inverse_z1="z1"):
    return {0: MS_FWD.format(z1=z1, h=h, logdet=logdet), 1: MS_INV.format(z1=inverse_z1)}


CASES = [
    # Exercise 4.1
    Case(SQUEEZE, "view to split the axes", _squeeze("""b, c, h, w = x.shape
return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)""")),
    Case(SQUEEZE, "pixel_unshuffle", _squeeze("return F.pixel_unshuffle(x, 2)", "return F.pixel_shuffle(z, 2)")),
    Case(SQUEEZE, "slices", _squeeze(
        "return torch.stack([x[:, :, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)], dim=2).flatten(1, 2)",
        """b, c, h, w = z.shape
x = z.new_zeros(b, c // 4, 2 * h, 2 * w)
parts = z.reshape(b, c // 4, 4, h, w)
for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
    x[:, :, dy::2, dx::2] = parts[:, :, k]
return x""")),
    Case(SQUEEZE, "a plain reshape", _squeeze("""b, c, h, w = x.shape
return x.reshape(b, 4 * c, h // 2, w // 2)"""), "a plain reshape puts whole rows into channels"),
    Case(SQUEEZE, "dy and dx swapped", _squeeze(_permuted("0, 1, 5, 3, 2, 4")), "channels 1 and 2 are swapped"),
    Case(SQUEEZE, "channel index last", _squeeze(_permuted("0, 3, 5, 1, 2, 4")), "Yours puts the channel index last"),
    Case(SQUEEZE, "view after the permute", _squeeze("""b, c, h, w = x.shape
x = x.reshape(b, c, h // 2, 2, w // 2, 2)
return x.permute(0, 1, 3, 5, 2, 4).view(b, 4 * c, h // 2, w // 2)"""), "use .reshape"),
    Case(SQUEEZE, "view merging batch and channels", _squeeze("""b, c, h, w = x.shape
x = x.view(b * c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3)
return x.reshape(b, 4 * c, h // 2, w // 2)"""), "failed on a non-contiguous input"),
    Case(SQUEEZE, "unsqueeze with a view", _squeeze(_permuted("0, 1, 3, 5, 2, 4"), """b, c, h, w = z.shape
z = z.view(b * c // 4, 2, 2, h, w).permute(0, 3, 1, 4, 2)
return z.reshape(b, c // 4, 2 * h, 2 * w)"""), "unsqueeze failed on a non-contiguous input"),
    Case(SQUEEZE, "calls the reference", _squeeze("return flowlib.layers.squeeze(x)", "return flowlib.layers.unsqueeze(z)"),
         "asks you to write squeeze and unsqueeze yourself"),
    Case(SQUEEZE, "calls the reference layer", _squeeze("return flowlib.layers.Squeeze()(x)[0]",
                                                       "return flowlib.layers.Squeeze().inverse(z)[0]"),
         "asks you to write squeeze and unsqueeze yourself"),
    Case(SQUEEZE, "unsqueeze with the squeeze's permutation", _squeeze(_permuted("0, 1, 3, 5, 2, 4"), """b, c, h, w = z.shape
z = z.reshape(b, c // 4, 2, 2, h, w)
return z.permute(0, 1, 4, 3, 5, 2).reshape(b, c // 4, 2 * h, 2 * w)"""), "unsqueeze of the squeezed example should give back"),
    # Exercise 4.2
    Case(SPLIT, "slices and a division", {0: """a, b = x[:, : self.channels // 2], x[:, self.channels // 2:]
mean, log_sd = self.mean_and_log_sd(a)
return torch.cat((a, (b - mean) / torch.exp(log_sd)), 1), -log_sd.sum(dim=(1, 2, 3))""",
                                          1: """a, b = z[:, : self.channels // 2], z[:, self.channels // 2:]
mean, log_sd = self.mean_and_log_sd(a)
return torch.cat((a, mean + b * log_sd.exp()), 1), log_sd.sum(dim=(1, 2, 3))"""}),
    Case(SPLIT, "torch.split and reshape", _split(b="(b - mean) * (-log_sd).exp()",
                                                  logdet="-log_sd.reshape(len(x), -1).sum(-1)",
                                                  inverse_logdet="log_sd.reshape(len(z), -1).sum(-1)")),
    Case(SPLIT, "halves swapped", {0: """a, b = x.chunk(2, dim=1)
mean, log_sd = self.mean_and_log_sd(a)
return torch.cat([(b - mean) * torch.exp(-log_sd), a], dim=1), -log_sd.flatten(1).sum(1)"""}, "the halves are swapped"),
    Case(SPLIT, "multiplied by the sd", _split(b="(b - mean) * torch.exp(log_sd)", inverse_b="b * torch.exp(-log_sd) + mean"),
         "you multiplied by exp(log_sd)"),
    Case(SPLIT, "mean not subtracted", _split(b="b * torch.exp(-log_sd)", inverse_b="b * torch.exp(log_sd)"),
         "the mean is not subtracted"),
    Case(SPLIT, "prior from b", {0: """a, b = x.chunk(2, dim=1)
mean, log_sd = self.mean_and_log_sd(b)
return torch.cat([a, (b - mean) * torch.exp(-log_sd)], dim=1), -log_sd.flatten(1).sum(1)"""},
         "mean and log_sd were computed from b"),
    Case(SPLIT, "divided by log_sd", _split(b="(b - mean) / log_sd", inverse_b="b * log_sd + mean"),
         "you divided by log_sd itself"),
    Case(SPLIT, "log-det sign", _split(logdet="log_sd.flatten(1).sum(1)", inverse_logdet="-log_sd.flatten(1).sum(1)"),
         "the sign is wrong"),
    Case(SPLIT, "log-det averaged", _split(logdet="-log_sd.flatten(1).mean(1)", inverse_logdet="log_sd.flatten(1).mean(1)"),
         "the logdet is averaged"),
    Case(SPLIT, "inverse in the wrong order", _split(inverse_b="(b + mean) * torch.exp(log_sd)"),
         "b = b' * exp(log_sd) + mean"),
    Case(SPLIT, "inverse log-det not negated", _split(inverse_logdet="-log_sd.flatten(1).sum(1)"),
         "inverse returns the same log-det as forward"),
    # Exercise 4.3
    Case(MULTI, "slices", {0: """h, ld1 = self.level1(v)
h, lds = self.split(h)
half = h.shape[1] // 2
z1 = h[:, half:]
z2, ld2 = self.level2(h[:, :half])
return [z1, z2], ld1 + lds + ld2""", 1: """z1, z2 = latents
h, ld2 = self.level2.inverse(z2)
h, lds = self.split.inverse(torch.cat((h, z1), dim=1))
v, ld1 = self.level1.inverse(h)
return v, sum([ld1, lds, ld2])"""}),
    Case(MULTI, "a loop over the levels", {0: """logdet = 0
h = v
for layer in (self.level1, self.split):
    h, ld = layer(h)
    logdet = logdet + ld
h, z1 = h.chunk(2, dim=1)
z2, ld = self.level2(h)
return [z1, z2], logdet + ld"""}),
    Case(MULTI, "z1 before the split's prior", _multi(z1="z1 = self.level1(v)[0].chunk(2, dim=1)[1]\nh = h.chunk(2, dim=1)[0]"),
         "z1 is the second half *before* the split's prior"),
    Case(MULTI, "z1 is the first half", _multi(z1="z1, h = h.chunk(2, dim=1)"), "z1 is the first half"),
    Case(MULTI, "split's log-det missing", _multi(logdet="logdet1 + logdet2"), "the split's log-det is missing"),
    Case(MULTI, "split's log-det subtracted", _multi(logdet="logdet1 - logdet_split + logdet2"),
         "a log-det has the wrong sign"),
    Case(MULTI, "fresh z1 in the inverse", _multi(inverse_z1="torch.randn_like(z1)"),
         "flow_inverse must reuse the given z1"),
]
