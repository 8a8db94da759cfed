"""Students' answers to notebook 06 (Glow's flow step, the multi-scale encoder, sampling through the priors)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

STEP = "nb06_flow_step"
ENCODE = "nb06_encode"
SAMPLE = "nb06_sample"

STEP_FWD = """h, logdet_actnorm = self.{a}(x)
h, logdet_conv = self.{b}(h)
z, logdet_coupling = self.coupling(h)
return z, {logdet}"""
STEP_INV = """h, logdet_coupling = self.coupling.{inv}(z)
h, logdet_conv = self.{b}.{inv}(h)
x, logdet_actnorm = self.{a}.{inv}(h)
return x, {logdet}"""
SUM = "logdet_actnorm + logdet_conv + logdet_coupling"


def _step(a="actnorm", b="conv", logdet=SUM, inv="inverse", inverse_logdet=SUM):
    return {0: STEP_FWD.format(a=a, b=b, logdet=logdet), 1: STEP_INV.format(a=a, b=b, inv=inv, logdet=inverse_logdet)}


ENC = """for level, flow in enumerate(glow.levels):
    h, ld = flow(h)
    logdet = logdet + ld
    if level < len(glow.splits):
        {split}
{top}
latents.append(h)"""
SPLIT = """h, ld = glow.splits[level](h)
        logdet = logdet + ld
        h, z = h.chunk(2, dim=1)
        latents.append(z)"""
TOP = """if glow.top_prior is not None:
    h, ld = glow.top_prior(h)
    logdet = logdet + ld"""


def _encode(split=SPLIT, top=TOP):
    return {0: ENC.format(split=split, top=top)}


SAMPLER = """def noise(shape):
    {noise}

h = noise(glow.latent_shapes[-1])
if glow.top_prior is not None:
    mean, log_sd = glow.top_prior.mean_log_sd(n)
    h = {top}
h, _ = glow.levels[-1].inverse(h)
for level in reversed(range(len(glow.splits))):
    mean, log_sd = glow.splits[level].mean_log_sd(h)
    b = {split}
    h, _ = glow.levels[level].inverse({cat})
{out}"""
NOISE = "return temperature * torch.randn((n, *shape), generator=generator, dtype=glow.dtype).to(glow.device)"


def _sampler(noise=NOISE, top="mean + torch.exp(log_sd) * h", split="mean + torch.exp(log_sd) * noise(glow.latent_shapes[level])",
             cat="torch.cat([h, b], dim=1)", out="x, _ = glow.dequantize.inverse(h)\nreturn x"):
    return {0: SAMPLER.format(noise=noise, top=top, split=split, cat=cat, out=out)}


CASES = [
    # Exercise 6.1
    Case(STEP, "loops", {0: """logdet = 0
for layer in (self.actnorm, self.conv, self.coupling):
    x, ld = layer(x)
    logdet = logdet + ld
return x, logdet""", 1: """logdet = 0
for layer in (self.coupling, self.conv, self.actnorm):
    z, ld = layer.inverse(z)
    logdet = logdet + ld
return z, logdet"""}),
    Case(STEP, "sum of a list", _step(logdet="sum([logdet_actnorm, logdet_conv, logdet_coupling])",
                                      inverse_logdet="torch.stack([logdet_coupling, logdet_conv, logdet_actnorm]).sum(0)")),
    Case(STEP, "conv before actnorm", _step(a="conv", b="actnorm"), "it is not Glow's step"),
    Case(STEP, "inverse in forward order", {1: """h, logdet_actnorm = self.actnorm.inverse(z)
h, logdet_conv = self.conv.inverse(h)
x, logdet_coupling = self.coupling.inverse(h)
return x, logdet_actnorm + logdet_conv + logdet_coupling"""}, "undo the three layers in reverse order"),
    Case(STEP, "inverse through the forward methods", {1: """h, logdet_coupling = self.coupling(z)
h, logdet_conv = self.conv(h)
x, logdet_actnorm = self.actnorm(h)
return x, -(logdet_coupling + logdet_conv + logdet_actnorm)"""}, "each with its own inverse"),
    Case(STEP, "conv's log-det missing", _step(logdet="logdet_actnorm + logdet_coupling",
                                               inverse_logdet="logdet_actnorm + logdet_coupling"),
         "a term that does not depend on the input is missing or extra"),
    Case(STEP, "only the coupling's log-det", _step(logdet="logdet_coupling", inverse_logdet="logdet_coupling"),
         "Wrong log-determinant"),
    Case(STEP, "inverse log-det negated", _step(inverse_logdet="-(" + SUM + ")"),
         "inverse returns the same log-det as forward"),
    # Exercise 6.2
    Case(ENCODE, "slices and a list of log-dets", {0: """parts = []
for i, flow in enumerate(glow.levels):
    h, ld = flow(h)
    parts.append(ld)
    if i < len(glow.splits):
        h, ld = glow.splits[i](h)
        parts.append(ld)
        c = h.shape[1] // 2
        latents.append(h[:, c:])
        h = h[:, :c]
if glow.top_prior is not None:
    h, ld = glow.top_prior(h)
    parts.append(ld)
latents.append(h)
logdet = sum(parts)"""}),
    Case(ENCODE, "zip with the splits", {0: """for flow, split in zip(glow.levels, list(glow.splits) + [None]):
    h, ld = flow(h)
    logdet = logdet + ld
    if split is not None:
        h, ld = split(h)
        logdet = logdet + ld
        latents.append(h.chunk(2, dim=1)[1])
        h = h.chunk(2, dim=1)[0]
if glow.top_prior is not None:
    h, ld = glow.top_prior(h)
    logdet = logdet + ld
latents.append(h)"""}),
    Case(ENCODE, "calls flow_forward", {0: "latents, logdet = glow.flow_forward(v)"},
         "asks you to write the encoder"),
    Case(ENCODE, "calls encode", {0: "latents, logdet = glow.encode(v)"}, "asks you to write the encoder"),
    Case(ENCODE, "no top prior", _encode(top="pass"), "check the top prior"),
    Case(ENCODE, "halves before the split's prior", _encode(split="""h, z = h.chunk(2, dim=1)
        latents.append(z)"""), "check the split"),
    Case(ENCODE, "first half set aside", _encode(split="""h, ld = glow.splits[level](h)
        logdet = logdet + ld
        z, h = h.chunk(2, dim=1)
        latents.append(z)"""), "check the split"),
    Case(ENCODE, "split's log-det missing", _encode(split="""h, ld = glow.splits[level](h)
        h, z = h.chunk(2, dim=1)
        latents.append(z)"""), "every split and the top prior"),
    Case(ENCODE, "top latent first", {0: ENC.format(split=SPLIT, top=TOP).replace("latents.append(h)", "latents.insert(0, h)")},
         "latent 0 has shape"),
    # Exercise 6.3
    Case(SAMPLE, "through the priors' inverses", {0: """h = temperature * torch.randn((n, *glow.latent_shapes[-1]), generator=generator, dtype=glow.dtype).to(glow.device)
if glow.top_prior is not None:
    h, _ = glow.top_prior.inverse(h)
h, _ = glow.levels[-1].inverse(h)
for l in range(len(glow.splits) - 1, -1, -1):
    b = temperature * torch.randn((n, *glow.latent_shapes[l]), generator=generator, dtype=glow.dtype).to(glow.device)
    h, _ = glow.splits[l].inverse(torch.cat([h, b], dim=1))
    h, _ = glow.levels[l].inverse(h)
return glow.dequantize.inverse(h)[0]"""}),
    Case(SAMPLE, "zip over the reversed levels", {0: """shapes = glow.latent_shapes
eps = torch.randn(n, *shapes[-1], generator=generator, dtype=glow.dtype)
h = temperature * eps.to(glow.device)
if glow.top_prior:
    m, s = glow.top_prior.mean_log_sd(n)
    h = m + s.exp() * h
for flow, split, shape in zip(reversed(glow.levels), [None, *reversed(glow.splits)], [None, *reversed(shapes[:-1])]):
    if split is not None:
        m, s = split.mean_log_sd(h)
        eps = torch.randn(n, *shape, generator=generator, dtype=glow.dtype)
        h = torch.cat([h, m + s.exp() * temperature * eps.to(glow.device)], 1)
    h = flow.inverse(h)[0]
return glow.dequantize.inverse(h)[0]"""}),
    Case(SAMPLE, "noise drawn finest first", {0: SAMPLER.replace("def noise(shape):\n    {noise}", """eps = [temperature * torch.randn((n, *s), generator=generator, dtype=glow.dtype) for s in glow.latent_shapes]
noise = lambda shape: eps[[tuple(s) for s in glow.latent_shapes].index(tuple(shape))]""").format(
        top="mean + torch.exp(log_sd) * h", split="mean + torch.exp(log_sd) * noise(glow.latent_shapes[level])",
        cat="torch.cat([h, b], dim=1)", out="return glow.dequantize.inverse(h)[0]")},
         "drawn finest level first"),
    Case(SAMPLE, "calls glow.sample", {0: "return glow.sample(n, temperature, generator=generator)"},
         "asks you to write the sampler"),
    Case(SAMPLE, "no top prior", _sampler(top="h"), "the top latent is wrong"),
    Case(SAMPLE, "temperature scales the mean", _sampler(
        noise="return torch.randn((n, *shape), generator=generator, dtype=glow.dtype).to(glow.device)",
        top="temperature * (mean + torch.exp(log_sd) * h)"), "at T = 0 it is the mean, not 0"),
    Case(SAMPLE, "log_sd not exponentiated", _sampler(top="mean + log_sd * h", split="mean + log_sd * noise(glow.latent_shapes[level])"),
         "T * exp(log_sd) * eps"),
    Case(SAMPLE, "no split prior", _sampler(split="noise(glow.latent_shapes[level])"),
         "the half set aside at split"),
    Case(SAMPLE, "halves swapped", _sampler(cat="torch.cat([b, h], dim=1)"), "the halves are swapped"),
    Case(SAMPLE, "no dequantize inverse", _sampler(out="return h"), "not whole grey levels"),
    Case(SAMPLE, "randn_like", _sampler(noise="return temperature * torch.randn_like(torch.zeros(n, *shape, dtype=glow.dtype))"),
         "draw every eps from the generator you are given"),
    Case(SAMPLE, "float32 noise", _sampler(noise="return temperature * torch.randn((n, *shape), generator=generator).to(glow.device)"),
         "dtype=glow.dtype"),
    Case(SAMPLE, "float64 noise always", _sampler(noise="return temperature * torch.randn((n, *shape), generator=generator, dtype=torch.float64)"),
         "draw the noise in the model's dtype"),
    Case(SAMPLE, "temperature squared", _sampler(
        noise="return temperature ** 2 * torch.randn((n, *shape), generator=generator, dtype=glow.dtype).to(glow.device)"),
         "T * exp(log_sd) * eps"),
    Case(SAMPLE, "top level not undone", {0: _sampler()[0].replace("h, _ = glow.levels[-1].inverse(h)\n", "")},
         "Split.mean_log_sd takes the half of the channels that stays"),
    Case(SAMPLE, "top prior given the latent", {0: _sampler()[0].replace("glow.top_prior.mean_log_sd(n)", "glow.top_prior.mean_log_sd(h)")},
         "takes the batch size, an int such as n"),
    Case(SAMPLE, "top prior assumed", {0: _sampler()[0].replace("if glow.top_prior is not None:\n    mean", "if True:\n    mean")},
         "learn_top_prior=False"),
]
