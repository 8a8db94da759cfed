"""Students' answers to notebook 07 (an attribute direction in Glow's latent space, and using it)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

DIRECTION = "nb07_direction"
APPLY = "nb07_apply"

APPLY_BODY = """sizes = [math.prod(shape) for shape in model.latent_shapes]
pieces = direction.to(latents[0]).split(sizes)
moved = [{moved} for z, piece, shape in zip(latents, pieces, model.latent_shapes)]
return model.decode(moved)"""


def _apply(moved="z + alpha * piece.view(1, *shape)"):
    return {0: APPLY_BODY.format(moved=moved)}


CASES = [
    # Exercise 7.1
    Case(DIRECTION, "weighted means", {0: """w = has_attribute.to(z.dtype)
return (w @ z) / w.sum() - ((1 - w) @ z) / (1 - w).sum()"""}),
    Case(DIRECTION, "equal to one", {0: """m = has_attribute == 1
return z[m].mean(0) - z[~m].mean(0)"""}),
    Case(DIRECTION, "nonzero rows", {0: """rows = has_attribute.nonzero().squeeze(1)
others = (has_attribute == 0).nonzero().squeeze(1)
return z.index_select(0, rows).mean(0) - z.index_select(0, others).mean(0)"""}),
    Case(DIRECTION, "labels as an index", {0: "return z[has_attribute].mean(dim=0) - z[1 - has_attribute.long()].mean(dim=0)"},
         "turn the labels into a mask first"),
    Case(DIRECTION, "wrong sign", {0: """mask = has_attribute.bool()
return z[~mask].mean(dim=0) - z[mask].mean(dim=0)"""}, "wrong sign"),
    Case(DIRECTION, "sums", {0: """mask = has_attribute.bool()
return z[mask].sum(dim=0) - z[~mask].sum(dim=0)"""}, "average each group separately"),
    Case(DIRECTION, "minus the overall mean", {0: """mask = has_attribute.bool()
return z[mask].mean(dim=0) - z.mean(dim=0)"""}, "average each group separately"),
    Case(DIRECTION, "averaged over the wrong axis", {0: """mask = has_attribute.bool()
return z[mask].mean(dim=1) - z[~mask].mean(dim=1)"""}, "average over the rows (dim=0)"),
    Case(DIRECTION, "divided by all rows", {0: """w = has_attribute.to(z.dtype)
return (w @ z) / len(z) - ((1 - w) @ z) / len(z)"""}, "average each group separately"),
    Case(DIRECTION, "float32 result", {0: """mask = has_attribute.bool()
return (z[mask].mean(dim=0) - z[~mask].mean(dim=0)).float()"""}, "return a tensor of z's dtype"),
    # Exercise 7.2
    Case(APPLY, "flat and split", {0: """flat = flatten_latents(latents) + alpha * direction.to(latents[0])
pieces = flat.split([math.prod(s) for s in model.latent_shapes], dim=1)
return model.decode([p.reshape(-1, *s) for p, s in zip(pieces, model.latent_shapes)])"""}),
    Case(APPLY, "offsets", {0: """out, start = [], 0
for z in latents:
    n = z[0].numel()
    out.append(z + alpha * direction[start:start + n].to(z).view_as(z[0]))
    start += n
return model.decode(out)"""}),
    Case(APPLY, "only the top level", {0: """top = latents[-1]
n = top[0].numel()
moved = list(latents[:-1]) + [top + alpha * direction[-n:].to(top).view_as(top[0])]
return model.decode(moved)"""}, "of the pixels differ from decode(z + alpha * direction)"),
    Case(APPLY, "pieces in reverse order", {0: """sizes = [math.prod(shape) for shape in model.latent_shapes][::-1]
pieces = direction.to(latents[0]).split(sizes)[::-1]
moved = [z + alpha * piece.reshape(z[0].shape) if piece.numel() == z[0].numel() else z + alpha * piece.sum()
         for z, piece in zip(latents, pieces)]
return model.decode(moved)"""}, "of the pixels differ from decode(z + alpha * direction)"),
    Case(APPLY, "in place", _apply(moved="z.add_(alpha * piece.view(1, *shape))"), "do not change `latents` in place"),
    Case(APPLY, "alpha ignored", _apply(moved="z + piece.view(1, *shape)"), "with alpha = 0 the images must come back"),
    Case(APPLY, "returns the latents", {0: """sizes = [math.prod(shape) for shape in model.latent_shapes]
pieces = direction.to(latents[0]).split(sizes)
return [z + alpha * piece.view(1, *shape) for z, piece, shape in zip(latents, pieces, model.latent_shapes)]"""},
         "return the decoded images"),
    Case(APPLY, "subtracts", _apply(moved="z - alpha * piece.view(1, *shape)"),
         "of the pixels differ from decode(z + alpha * direction)"),
]
