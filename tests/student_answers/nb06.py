"""Students' answers to notebook 06 (Glow's flow step, the multi-scale encoder, resampling a level)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

STEP = "nb06_flow_step"
ENCODE = "nb06_encode"
RESAMPLE = "nb06_resample"

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


RES = """new = list(latents)
old = latents[level]
noise = {noise}
new[level] = {value}
return new"""


def _resample(noise="torch.randn(old.shape, generator=generator, dtype=old.dtype)", value="temperature * noise"):
    return {0: RES.format(noise=noise, value=value)}


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
    Case(RESAMPLE, "torch.randn with a device", _resample(
        noise="torch.randn(*old.shape, generator=generator, dtype=old.dtype).to(old.device)")),
    Case(RESAMPLE, "a list comprehension", {0: """noise = torch.randn(latents[level].shape, generator=generator, dtype=latents[level].dtype)
return [noise * temperature if i == level % len(latents) else z for i, z in enumerate(latents)]"""}),
    Case(RESAMPLE, "noise added to the old latent", _resample(value="old + temperature * noise"),
         "do not add the noise to it"),
    Case(RESAMPLE, "randn_like", _resample(noise="torch.randn_like(old)"), "draw it from the generator you are given"),
    Case(RESAMPLE, "float32 noise", _resample(noise="torch.randn(old.shape, generator=generator)"),
         "draw the noise in the old latent's dtype"),
    Case(RESAMPLE, "changes the list", {0: """latents[level] = temperature * torch.randn(latents[level].shape, generator=generator,
                                             dtype=latents[level].dtype)
return latents"""}, "do not change the list you are given"),
    Case(RESAMPLE, "in place", {0: """new = list(latents)
new[level] = latents[level].normal_(generator=generator).mul_(temperature)
return new"""}, "do not change the latents you are given in place"),
    Case(RESAMPLE, "temperature squared", _resample(value="temperature ** 2 * noise"),
         "standard deviation = temperature"),
    Case(RESAMPLE, "every level", {0: """return [temperature * torch.randn(z.shape, generator=generator, dtype=z.dtype) for z in latents]"""},
         "every level except `level` must stay as it was"),
]
