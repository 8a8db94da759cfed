"""Students' answers to notebook 03 (masks, bounded log-scale, affine coupling)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

MASK = "nb03_checkerboard_mask"
SCALE = "nb03_bounded_log_scale"
COUPLING = "nb03_affine_coupling"

SHIFT = """mask = self.mask.to(x.dtype)
raw, t = self.net(x * mask).chunk(2, dim=1)
return self.log_scale(raw) * (1 - mask), t * (1 - mask)"""
FORWARD = """log_s, t = self.log_scale_and_shift(x)
return (x + t) * torch.exp(log_s), log_s.flatten(1).sum(1)"""
INVERSE = """log_s, t = self.log_scale_and_shift(z)
return z * torch.exp(-log_s) - t, -log_s.flatten(1).sum(1)"""


def _coupling(shift=SHIFT, forward=FORWARD, inverse=INVERSE):
    return {0: shift, 1: forward, 2: inverse}


def _mask(body):
    return {0: body}


CASES = [
    # Exercise 3.1
    Case(MASK, "slices", _mask("""mask = torch.zeros(height, width)
mask[0::2, 0::2] = 1
mask[1::2, 1::2] = 1
if invert:
    mask = 1 - mask
return mask[None, None]""")),
    Case(MASK, "meshgrid parity", _mask("""i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
return (i % 2 == (j + int(invert)) % 2).to(torch.float32).reshape(1, 1, height, width)""")),
    Case(MASK, "odd positions", _mask("""m = ((torch.arange(height)[:, None] + torch.arange(width)) % 2 == 1).float()
return (1 - m if invert else m).view(1, 1, height, width)"""), "1 where row + col is even"),
    Case(MASK, "no leading dimensions", _mask("""m = ((torch.arange(height)[:, None] + torch.arange(width)) % 2 == 0).float()
return 1 - m if invert else m"""), "must have shape (1, 1, 4, 6)"),
    Case(MASK, "boolean", _mask("""m = (torch.arange(height)[:, None] + torch.arange(width)) % 2 == 0
return (~m if invert else m).view(1, 1, height, width)"""), "must be a float tensor"),
    Case(MASK, "invert ignored", _mask("""m = ((torch.arange(height)[:, None] + torch.arange(width)) % 2 == 0).float()
return m.view(1, 1, height, width)"""), "invert=True must swap"),
    Case(MASK, "a tiled 2x2 block", _mask("""m = torch.tensor([[1., 0.], [0., 1.]]).repeat(height // 2, width // 2)
return (1 - m if invert else m).view(1, 1, *m.shape)"""), "checkerboard_mask(3, 5) should have shape (1, 1, 3, 5)"),
    Case(MASK, "flat index parity", _mask("""m = (torch.arange(height * width) % 2 == 0).float().view(height, width)
return (1 - m if invert else m).view(1, 1, height, width)"""), "1 where row + col is even"),
    # Exercise 3.2
    Case(SCALE, "indexing with None", {0: """c = torch.exp(scaling_factor)[None, :, None, None]
return c * torch.tanh(raw / c)"""}),
    Case(SCALE, "multiply by exp(-w)", {0: """c = scaling_factor.exp().reshape(1, -1, 1, 1)
return torch.tanh(raw * torch.exp(-scaling_factor).view(1, -1, 1, 1)) * c"""}),
    Case(SCALE, "c is w", {0: """c = scaling_factor.view(1, -1, 1, 1)
return c * torch.tanh(raw / c)"""}, "c must be exp(scaling_factor)"),
    Case(SCALE, "no division", {0: """c = scaling_factor.exp().view(1, -1, 1, 1)
return c * torch.tanh(raw)"""}, "the division inside the tanh is missing"),
    Case(SCALE, "no factor", {0: """c = scaling_factor.exp().view(1, -1, 1, 1)
return torch.tanh(raw / c)"""}, "the factor c in front of the tanh is missing"),
    Case(SCALE, "no reshape", {0: """c = scaling_factor.exp()
return c * torch.tanh(raw / c)"""}, "reshape it to (1, C, 1, 1)"),
    Case(SCALE, "detached", {0: """c = scaling_factor.detach().exp().view(1, -1, 1, 1)
return c * torch.tanh(raw / c)"""}, "No gradient reached scaling_factor"),
    Case(SCALE, "through .data", {0: """c = scaling_factor.data.exp().view(1, -1, 1, 1)
return c * torch.tanh(raw / c)"""}, "No gradient reached scaling_factor"),
    Case(SCALE, "clamped", {0: """c = scaling_factor.exp().view(1, -1, 1, 1)
return torch.maximum(torch.minimum(raw, c), -c)"""}, "bounded_log_scale(raw, w) is wrong"),
    # Exercise 3.3
    Case(COUPLING, "slicing and dim sums", _coupling(
        shift="""h = self.net(x * self.mask)
c = h.shape[1] // 2
return self.log_scale(h[:, :c]) * (1 - self.mask), h[:, c:] * (1 - self.mask)""",
        forward="""log_s, t = self.log_scale_and_shift(x)
z = (x + t) * log_s.exp()
return z, log_s.sum(dim=(1, 2, 3))""",
        inverse="""log_s, t = self.log_scale_and_shift(z)
return z / torch.exp(log_s) - t, -torch.sum(log_s, dim=[1, 2, 3])""")),
    Case(COUPLING, "masks after the formula", _coupling(
        shift="""raw, t = self.net(x * self.mask).chunk(2, dim=1)
return self.log_scale(raw), t""",
        forward="""log_s, t = self.log_scale_and_shift(x)
keep = self.mask
z = keep * x + (1 - keep) * ((x + t) * torch.exp(log_s))
return z, (log_s * (1 - keep)).flatten(1).sum(1)""",
        inverse="""log_s, t = self.log_scale_and_shift(z)
keep = self.mask
x = keep * z + (1 - keep) * (z * torch.exp(-log_s) - t)
return x, -(log_s * (1 - keep)).flatten(1).sum(1)""")),
    Case(COUPLING, "no masking of s and t", _coupling(shift="""raw, t = self.net(x * self.mask).chunk(2, dim=1)
return self.log_scale(raw), t"""), "the entries where mask == 1 changed"),
    Case(COUPLING, "the network sees all of x", _coupling(shift="""mask = self.mask.to(x.dtype)
raw, t = self.net(x).chunk(2, dim=1)
return self.log_scale(raw) * (1 - mask), t * (1 - mask)"""), "the network saw all of x"),
    Case(COUPLING, "scale, then shift", _coupling(forward="""log_s, t = self.log_scale_and_shift(x)
return x * torch.exp(log_s) + t, log_s.flatten(1).sum(1)""", inverse="""log_s, t = self.log_scale_and_shift(z)
return (z - t) * torch.exp(-log_s), -log_s.flatten(1).sum(1)"""), "you scaled, then shifted"),
    Case(COUPLING, "s and t swapped", _coupling(shift="""mask = self.mask.to(x.dtype)
t, raw = self.net(x * mask).chunk(2, dim=1)
return self.log_scale(raw) * (1 - mask), t * (1 - mask)"""), "s and t are swapped"),
    Case(COUPLING, "raw log-scale", _coupling(shift="""mask = self.mask.to(x.dtype)
raw, t = self.net(x * mask).chunk(2, dim=1)
return raw * (1 - mask), t * (1 - mask)"""), "the raw network output was used as the log-scale"),
    Case(COUPLING, "log-det over every entry", _coupling(
        shift="""raw, t = self.net(x * self.mask).chunk(2, dim=1)
return self.log_scale(raw), t * (1 - self.mask)""",
        forward="""log_s, t = self.log_scale_and_shift(x)
return (x + t) * torch.exp(log_s * (1 - self.mask)), log_s.flatten(1).sum(1)""",
        inverse="""log_s, t = self.log_scale_and_shift(z)
return z * torch.exp(-log_s * (1 - self.mask)) - t, -log_s.flatten(1).sum(1)"""),
         "you summed s over the masked (unchanged) entries too"),
    Case(COUPLING, "log-det sign", _coupling(forward="""log_s, t = self.log_scale_and_shift(x)
return (x + t) * torch.exp(log_s), -log_s.flatten(1).sum(1)""", inverse="""log_s, t = self.log_scale_and_shift(z)
return z * torch.exp(-log_s) - t, log_s.flatten(1).sum(1)"""), "the sign is wrong"),
    Case(COUPLING, "log-det averaged", _coupling(forward="""log_s, t = self.log_scale_and_shift(x)
return (x + t) * torch.exp(log_s), log_s.flatten(1).mean(1)""", inverse="""log_s, t = self.log_scale_and_shift(z)
return z * torch.exp(-log_s) - t, -log_s.flatten(1).mean(1)"""), "you averaged s instead of summing it"),
    Case(COUPLING, "inverse in the wrong order", _coupling(inverse="""log_s, t = self.log_scale_and_shift(z)
return (z - t) * torch.exp(-log_s), -log_s.flatten(1).sum(1)"""), "first divide by exp(s), then subtract t"),
    Case(COUPLING, "inverse log-det not negated", _coupling(inverse="""log_s, t = self.log_scale_and_shift(z)
return z * torch.exp(-log_s) - t, log_s.flatten(1).sum(1)"""), "inverse returns the same log-det as forward"),
]
