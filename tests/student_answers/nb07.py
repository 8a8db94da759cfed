"""Students' answers to notebook 07 (an attribute direction in Glow's latent space, using it, and scoring with it)."""
# ruff: noqa: E501 (each answer is written on the lines a student would write it on)
from .harness import Case

DIRECTION = "nb07_direction"
APPLY = "nb07_apply"
SCORE = "nb07_score"
MID = "m = (mean_with + mean_without) / 2\nd = mean_with - mean_without\n"

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
    # Exercise 7.3
    Case(SCORE, "sum over the product", {0: "d = mean_with - mean_without\nreturn ((z - (mean_with + mean_without) / 2) * d).sum(dim=1) / d.norm()"}),
    Case(SCORE, "unit vector first", {0: """u = torch.nn.functional.normalize(mean_with - mean_without, dim=0)
return z @ u - ((mean_with + mean_without) / 2) @ u"""}),
    Case(SCORE, "einsum", {0: MID + 'return torch.einsum("nd,d->n", z - m, d) / torch.linalg.vector_norm(d)'}),
    Case(SCORE, "wrong sign", {0: MID + "return (z - m) @ (-d) / d.norm()"}, "wrong sign"),
    Case(SCORE, "from the origin", {0: MID + "return z @ d / d.norm()"}, "not from the origin"),
    Case(SCORE, "from the mean without", {0: MID + "return (z - mean_without) @ d / d.norm()"}, "not from one of the means"),
    Case(SCORE, "not normalised", {0: MID + "return (z - m) @ d"}, "divide by the length of the direction, ||"),
    Case(SCORE, "squared norm", {0: MID + "return (z - m) @ d / d.norm() ** 2"}, "not by its square"),
    Case(SCORE, "cosine similarity", {0: MID + "return torch.nn.functional.cosine_similarity(z - m, d.unsqueeze(0), dim=1)"},
         "that is a cosine"),
    Case(SCORE, "no sum", {0: MID + "return (z - m) * d / d.norm()"}, "return one score per face"),
    Case(SCORE, "in place", {0: MID + "z -= m\nreturn z @ d / d.norm()"}, "do not change the inputs"),
    Case(SCORE, "float32", {0: MID + "return ((z - m) @ d / d.norm()).float()"}, "keep z's dtype"),
]
