"""Street scenes with exact labels and depth: the training and evaluation data of the task heads.

:func:`render_scene` draws one street-like scene from a seed with a pinhole
camera over a flat ground plane, as a painter's z-buffer over primitives
whose depth is known in closed form at every pixel:

- the ground plane (road with lane marks, kerbs and pavements, often a grass
  verge), depth ``Z = f * cam_height / (v - v_horizon)``;
- building facades along both sides of the street (receding planes
  ``X = +-x_wall``, depth ``Z = f * |x_wall| / |u - u_c|``) with windows,
  storeys and gaps, sometimes a facade closing the street far away;
- vehicles (cars, vans, buses) on the road, people on the pavements and
  crossing, poles with signs or traffic lights, trees and hedges, all as
  fronto-parallel silhouettes at their own depth;
- sky above everything else, at :data:`SKY_DEPTH_M`.

Colour, texture, lighting, haze, the camera's pitch (horizon row) and its
principal column vary with the seed so that a model has to learn shape and
context, not colour.  The camera itself is one rig, as in a real driving
dataset: a fixed focal length (:data:`FOCAL_WIDTHS`) and a mounting height
that varies only a little (:data:`CAMERA_HEIGHT_M`).  Metric depth from one
image needs that: every depth in a scene over a ground plane scales with
``f * cam_height``, which no pixel shows, so drawing both freely (as
generator version 1 did, f in 0.55..0.85 widths, height 1.2..1.9 m) leaves
an error no model can remove (AbsRel about 0.15 for a model that cannot
tell the rig).  Labels are Cityscapes' 7 categories (:data:`CLASSES`), depth is in
metres (float32).  Rendering is pure numpy and deterministic per seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
"""Cityscapes' categories (void excluded), in label order: label k is CLASSES[k]."""
FLAT, CONSTRUCTION, OBJECT, NATURE, SKY, HUMAN, VEHICLE = range(len(CLASSES))

CLASS_COLOURS = np.array([(128, 64, 128), (70, 70, 70), (250, 170, 30), (107, 142, 35),
                          (70, 130, 180), (220, 20, 60), (0, 0, 142)], dtype=np.uint8)
"""Display colour (RGB) of each class, Cityscapes' palette."""

DEPTH_COLOURMAP = "magma"
"""Matplotlib colour map of every depth picture edgemoe draws (bright = far)."""

SKY_DEPTH_M = 100.0
"""Depth of the sky (and cap of every other depth), metres."""
MIN_DEPTH_M = 1.0
"""Nearest depth any object is placed at, metres."""
FOCAL_WIDTHS = 0.7
"""The camera's focal length in image widths (0.7: a 71 degree horizontal field of view)."""
CAMERA_HEIGHT_M = (1.45, 1.55)
"""Range of the camera's height above the ground, metres (one rig; the load moves it a little)."""


@dataclass(frozen=True)
class Scene:
    """One rendered scene: ``image_u8`` [H, W, 3] RGB, ``label`` [H, W] uint8 class ids, ``depth_m`` [H, W] float32."""

    image_u8: np.ndarray
    label: np.ndarray
    depth_m: np.ndarray


class _Canvas:
    """A z-buffered canvas: colour (float RGB in [0, 1]), label and depth per pixel."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.h, self.w = height, width
        self.rng = rng
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.label = np.full((height, width), SKY, np.uint8)
        self.depth = np.full((height, width), SKY_DEPTH_M, np.float32)
        self.v, self.u = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
        self._noise_bank: dict[int, np.ndarray] = {}

    def noise(self, cell: int) -> np.ndarray:
        """Smooth value noise in [-1, 1], [H, W], features about ``cell`` pixels wide.

        One field per cell size is drawn per scene; each call returns it rolled
        and flipped at random, which is as good as a fresh field for texture and
        several times cheaper.
        """
        base = self._noise_bank.get(cell)
        if base is None:
            base = self._noise_bank[cell] = _noise(self.rng, 2 * self.h, 2 * self.w, cell)
        dy, dx = self.rng.integers(0, self.h), self.rng.integers(0, self.w)
        field = base[dy:dy + self.h, dx:dx + self.w]
        return field[::-1] if self.rng.uniform() < 0.5 else field

    def paint(self, mask: np.ndarray, depth, label: int, rgb: np.ndarray) -> None:
        """Write ``rgb`` ([H, W, 3] or [3]) and ``label`` where ``mask`` holds and the new depth is nearer."""
        depth = np.broadcast_to(np.asarray(depth, np.float32), mask.shape)
        win = mask & (depth < self.depth)
        if not win.any():
            return
        self.depth[win] = depth[win]
        self.label[win] = label
        rgb = np.asarray(rgb, np.float32)
        self.rgb[win] = rgb[win] if rgb.ndim == 3 else rgb


@dataclass(frozen=True)
class _Camera:
    """Pinhole camera: focal length ``f`` (pixels), principal column ``uc``, horizon row ``vh``, height ``cam_h`` (m)."""

    f: float
    uc: float
    vh: float
    cam_h: float

    def column(self, x_m: float, z_m: float) -> float:
        return self.uc + self.f * x_m / z_m

    def row(self, y_m: float, z_m: float) -> float:
        """Image row of height ``y_m`` above the ground at depth ``z_m``."""
        return self.vh + self.f * (self.cam_h - y_m) / z_m


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth value noise in [-1, 1], [h, w], with features about ``cell`` pixels wide."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    ty, tx = (ys - y0)[:, None], (xs - x0)[None, :]
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)
    a = grid[y0][:, x0] * (1 - tx) + grid[y0][:, x0 + 1] * tx
    b = grid[y0 + 1][:, x0] * (1 - tx) + grid[y0 + 1][:, x0 + 1] * tx
    return a * (1 - ty) + b * ty


def _hsv(rng: np.random.Generator, hue=(0.0, 1.0), sat=(0.0, 1.0), val=(0.0, 1.0)) -> np.ndarray:
    """A random RGB colour [3] in [0, 1] drawn in HSV ranges."""
    h, s, v = rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def _textured(canvas: _Canvas, base: np.ndarray, amount: float, cell: int) -> np.ndarray:
    """``base`` colour [3] modulated by value noise: [H, W, 3]."""
    n = canvas.noise(cell) + 0.3 * canvas.noise(1)
    return np.clip(base[None, None, :] * (1 + amount * n)[..., None], 0, 1)


def _sky(canvas: _Canvas, cam: _Camera) -> np.ndarray:
    """Fill the sky gradient (+ clouds); returns the horizon colour used for haze."""
    rng = canvas.rng
    mood = rng.uniform()
    if mood < 0.6:  # clear blue
        top, horizon = _hsv(rng, (0.55, 0.64), (0.35, 0.8), (0.55, 0.95)), _hsv(rng, (0.52, 0.62), (0.05, 0.3), (0.8, 1.0))
    elif mood < 0.85:  # overcast
        grey = rng.uniform(0.55, 0.9)
        top, horizon = np.full(3, grey * 0.85, np.float32), np.full(3, grey, np.float32)
    else:  # dusk
        top, horizon = _hsv(rng, (0.6, 0.75), (0.3, 0.6), (0.3, 0.6)), _hsv(rng, (0.02, 0.12), (0.3, 0.7), (0.7, 1.0))
    t = np.clip(canvas.v / max(cam.vh, 1.0), 0, 1)[..., None]
    rgb = top * (1 - t) + horizon * t
    clouds = np.clip(canvas.noise(int(rng.integers(12, 40))), 0, 1)[..., None]
    rgb = rgb + clouds * rng.uniform(0, 0.5) * (np.float32(1.0) - rgb)
    canvas.rgb[:] = rgb
    return horizon


def _ground(canvas: _Canvas, cam: _Camera, layout: dict) -> None:
    """Road, lane marks, kerbs, pavements and grass verges on the ground plane."""
    rng = canvas.rng
    below = canvas.v > cam.vh + 0.5
    z = np.where(below, cam.f * cam.cam_h / np.maximum(canvas.v - cam.vh, 1e-3), SKY_DEPTH_M)
    z = np.minimum(z, SKY_DEPTH_M)
    x = (canvas.u - cam.uc) * z / cam.f
    road = _textured(canvas, _hsv(rng, (0, 1), (0, 0.1), (0.2, 0.45)), 0.25, 6)
    pave = _textured(canvas, _hsv(rng, (0.05, 0.15), (0.0, 0.25), (0.45, 0.75)), 0.2, 3)
    rgb = np.where((np.abs(x) < layout["road_half_w"])[..., None], road, pave)
    # dashed centre line and solid edge lines, in ground coordinates
    dash = (np.mod(z + rng.uniform(0, 6), 6.0) < 3.0)
    line_w = 0.12
    centre = (np.abs(x - layout["centre_x"]) < line_w) & dash & layout["centre_line"]
    edges = np.abs(np.abs(x) - (layout["road_half_w"] - 0.3)) < line_w / 2
    marks = (centre | edges) & (z < 60)
    rgb = np.where(marks[..., None], np.array([0.85, 0.85, 0.8], np.float32) * rng.uniform(0.7, 1.0), rgb)
    kerb = np.abs(np.abs(x) - layout["road_half_w"]) < 0.15
    rgb = np.where(kerb[..., None], rgb * 1.25, rgb)
    canvas.paint(below, z, FLAT, np.clip(rgb, 0, 1))
    for side in (-1, 1):
        verge = layout["verge"][side]
        if verge is None:
            continue
        lo, hi = verge
        grass = below & (side * x > lo) & (side * x < hi)
        canvas.paint(grass, z - 1e-3, NATURE, _textured(canvas, _hsv(rng, (0.2, 0.32), (0.4, 0.8), (0.25, 0.55)), 0.35, 2))


def _facades(canvas: _Canvas, cam: _Camera, layout: dict) -> None:
    """Building segments on the receding planes ``X = side * x_wall``, and sometimes a far end facade."""
    rng = canvas.rng
    for side in (-1, 1):
        x_wall = layout["wall_x"][side]
        col = canvas.u - cam.uc
        facing = side * col > 0.5
        z = np.where(facing, cam.f * x_wall / np.maximum(side * col, 1e-3), SKY_DEPTH_M)
        z0 = rng.uniform(MIN_DEPTH_M, 6.0)
        while z0 < 90:
            length = rng.uniform(8, 35)
            z1 = z0 + length
            if rng.uniform() < 0.18:  # a gap between buildings
                z0 = z1
                continue
            height = rng.uniform(5, 28)
            base = _hsv(rng, (0, 1), (0.05, 0.45), (0.3, 0.85)) * (0.8 if side < 0 else 1.0)
            rgb = _textured(canvas, base, 0.15, 4)
            # storeys and windows in wall coordinates (along-street z, height y)
            y = cam.cam_h - (canvas.v - cam.vh) * z / cam.f
            storey = rng.uniform(2.8, 3.6)
            bay = rng.uniform(2.0, 4.0)
            win = ((np.mod(y, storey) > 0.9) & (np.mod(y, storey) < storey - 0.5)
                   & (np.mod(z - z0, bay) > 0.6) & (np.mod(z - z0, bay) < bay - 0.5) & (y > 2.5))
            glass = _hsv(rng, (0.5, 0.7), (0.1, 0.4), (0.1, 0.5))
            rgb = np.where(win[..., None], glass * (1 + 0.2 * canvas.noise(8)[..., None]), rgb)
            mask = facing & (z >= z0) & (z < z1) & (y >= 0) & (y <= height)
            canvas.paint(mask, z, CONSTRUCTION, np.clip(rgb, 0, 1))
            z0 = z1 + rng.uniform(0, 2)
    if rng.uniform() < 0.45:  # a facade closing the street
        z_end = rng.uniform(35, 90)
        height = rng.uniform(8, 30)
        top = cam.row(height, z_end)
        mask = canvas.v >= top
        canvas.paint(mask, z_end, CONSTRUCTION, _textured(canvas, _hsv(rng, (0, 1), (0.05, 0.4), (0.35, 0.8)), 0.15, 5))


def _box(canvas: _Canvas, cam: _Camera, x_m: float, z_m: float, width_m: float, y0_m: float, y1_m: float):
    """Mask of the fronto-parallel rectangle [x +- w/2] x [y0, y1] (metres) at depth z."""
    u0, u1 = cam.column(x_m - width_m / 2, z_m), cam.column(x_m + width_m / 2, z_m)
    # at least one pixel wide so thin objects stay visible (and labelled) at a distance
    if u1 - u0 < 1.0:
        mid = (u0 + u1) / 2
        u0, u1 = mid - 0.5, mid + 0.5
    v0, v1 = cam.row(y1_m, z_m), cam.row(y0_m, z_m)
    return (canvas.u >= u0) & (canvas.u < u1) & (canvas.v >= v0) & (canvas.v < v1)


def _ellipse(canvas: _Canvas, cam: _Camera, x_m: float, z_m: float, rx_m: float, yc_m: float, ry_m: float,
             wobble: float = 0.0) -> np.ndarray:
    """Mask of an upright ellipse centred at (x, yc) with radii (rx, ry) metres at depth z; ``wobble`` roughens it."""
    du = (canvas.u - cam.column(x_m, z_m)) / max(cam.f * rx_m / z_m, 0.5)
    dv = (canvas.v - cam.row(yc_m, z_m)) / max(cam.f * ry_m / z_m, 0.5)
    r = du * du + dv * dv
    if wobble:
        r = r + wobble * canvas.noise(max(2, int(cam.f * rx_m / z_m / 3)))
    return r < 1.0


def _vehicle(canvas: _Canvas, cam: _Camera, x: float, z: float) -> None:
    rng = canvas.rng
    kind = rng.choice(["car", "car", "car", "van", "bus"])
    width, height = {"car": (1.8, 1.45), "van": (2.0, 2.2), "bus": (2.5, 3.2)}[kind]
    paint = _hsv(rng, (0, 1), (0, 0.9), (0.1, 0.95))
    body = _box(canvas, cam, x, z, width, 0.25, height * (0.6 if kind == "car" else 1.0))
    cabin = _box(canvas, cam, x, z, width * 0.8, height * 0.55, height) if kind == "car" else np.zeros_like(body)
    glass = np.array([0.1, 0.12, 0.16], np.float32) * rng.uniform(0.6, 1.6)
    rgb = np.broadcast_to(paint, canvas.rgb.shape).copy()
    rgb[cabin & ~body] = glass
    # windscreen band on vans and buses, lights at the bottom corners
    if kind != "car":
        band = _box(canvas, cam, x, z, width * 0.9, height * 0.6, height * 0.9)
        rgb[band] = glass
    wheels = _box(canvas, cam, x, z, width * 1.02, 0.0, 0.35)
    rgb[wheels] = 0.05
    shade = 1 + 0.15 * canvas.noise(6)[..., None]
    canvas.paint(body | cabin | wheels, z, VEHICLE, np.clip(rgb * shade, 0, 1))


def _person(canvas: _Canvas, cam: _Camera, x: float, z: float) -> None:
    rng = canvas.rng
    h = rng.uniform(1.5, 1.95)
    skin = _hsv(rng, (0.03, 0.1), (0.2, 0.6), (0.3, 0.95))
    top = _hsv(rng, (0, 1), (0, 0.9), (0.1, 0.9))
    legs_c = _hsv(rng, (0, 1), (0, 0.6), (0.05, 0.6))
    head = _ellipse(canvas, cam, x, z, 0.11, h - 0.12, 0.13)
    torso = _box(canvas, cam, x, z, 0.45, h * 0.5, h - 0.22)
    stride = rng.uniform(0.0, 0.12)
    leg_l = _box(canvas, cam, x - 0.1 - stride, z, 0.15, 0.0, h * 0.52)
    leg_r = _box(canvas, cam, x + 0.1 + stride, z, 0.15, 0.0, h * 0.52)
    rgb = np.broadcast_to(legs_c, canvas.rgb.shape).copy()
    rgb[torso] = top
    rgb[head] = skin
    canvas.paint(head | torso | leg_l | leg_r, z, HUMAN, rgb)


def _pole(canvas: _Canvas, cam: _Camera, x: float, z: float) -> None:
    rng = canvas.rng
    h = rng.uniform(3.0, 7.5)
    metal = _hsv(rng, (0, 1), (0, 0.2), (0.2, 0.7))
    pole = _box(canvas, cam, x, z, rng.uniform(0.12, 0.3), 0.0, h)
    rgb = np.broadcast_to(metal, canvas.rgb.shape).copy()
    kind = rng.uniform()
    if kind < 0.4:  # sign plate
        w = rng.uniform(0.5, 1.0)
        plate = _box(canvas, cam, x, z - 0.05, w, h - w, h)
        rgb[plate] = _hsv(rng, (0, 1), (0.5, 1.0), (0.6, 1.0))
        canvas.paint(plate, z - 0.05, OBJECT, rgb)
    elif kind < 0.7:  # traffic light
        box = _box(canvas, cam, x, z - 0.05, 0.35, h - 1.0, h)
        rgb[box] = 0.08
        lamp = _ellipse(canvas, cam, x, z - 0.06, 0.1, h - rng.choice([0.2, 0.5, 0.8]), 0.1)
        rgb[lamp] = np.array([(1, 0.1, 0.1), (1, 0.8, 0.1), (0.2, 1, 0.3)][int(rng.integers(3))], np.float32)
        canvas.paint(box, z - 0.05, OBJECT, rgb)
    canvas.paint(pole, z, OBJECT, rgb)


def _tree(canvas: _Canvas, cam: _Camera, x: float, z: float) -> None:
    rng = canvas.rng
    h = rng.uniform(4, 12)
    r = rng.uniform(1.2, 3.5)
    leaf = _textured(canvas, _hsv(rng, (0.18, 0.35), (0.35, 0.85), (0.15, 0.5)), 0.45, 2)
    trunk = _box(canvas, cam, x, z, rng.uniform(0.2, 0.45), 0.0, h - r)
    crown = _ellipse(canvas, cam, x, z, r, h - r * 0.9, r, wobble=0.35)
    rgb = leaf.copy()
    rgb[trunk & ~crown] = _hsv(rng, (0.05, 0.1), (0.3, 0.7), (0.15, 0.4))
    canvas.paint(trunk | crown, z, NATURE, rgb)


def _hedge(canvas: _Canvas, cam: _Camera, x: float, z0: float, z1: float) -> None:
    """A low hedge along the street between depths z0 and z1 at lateral x (a receding band)."""
    rng = canvas.rng
    h = rng.uniform(0.6, 1.4)
    side = np.sign(x)
    col = canvas.u - cam.uc
    facing = side * col > 0.5
    z = np.where(facing, cam.f * abs(x) / np.maximum(side * col, 1e-3), SKY_DEPTH_M)
    y = cam.cam_h - (canvas.v - cam.vh) * z / cam.f
    mask = facing & (z >= z0) & (z < z1) & (y >= 0) & (y <= h * (1 + 0.15 * canvas.noise(3)))
    canvas.paint(mask, z, NATURE, _textured(canvas, _hsv(rng, (0.2, 0.33), (0.4, 0.8), (0.15, 0.45)), 0.45, 2))


def _layout(rng: np.random.Generator) -> dict:
    road_half_w = rng.uniform(3.5, 8.0)
    pave = {s: rng.uniform(1.5, 4.5) for s in (-1, 1)}
    verge = {}
    for s in (-1, 1):
        verge[s] = (road_half_w + pave[s] * 0.4, road_half_w + pave[s] * 0.4 + rng.uniform(0.8, 2.5)) \
            if rng.uniform() < 0.4 else None
    wall_x = {s: road_half_w + pave[s] + (verge[s][1] - verge[s][0] if verge[s] else 0) + rng.uniform(0, 2)
              for s in (-1, 1)}
    return {"road_half_w": road_half_w, "pave": pave, "verge": verge, "wall_x": wall_x,
            "centre_x": rng.uniform(-0.5, 0.5), "centre_line": bool(rng.uniform() < 0.8)}


def render_scene(seed: int | tuple[int, ...], height: int = 128, width: int = 256) -> Scene:
    """One street scene for ``seed`` (an int or a tuple of ints), ``height`` x ``width`` pixels."""
    rng = np.random.default_rng(seed)
    canvas = _Canvas(height, width, rng)
    cam = _Camera(f=width * FOCAL_WIDTHS, uc=width * rng.uniform(0.42, 0.58),
                  vh=height * rng.uniform(0.36, 0.52), cam_h=rng.uniform(*CAMERA_HEIGHT_M))
    layout = _layout(rng)
    horizon = _sky(canvas, cam)
    _ground(canvas, cam, layout)
    _facades(canvas, cam, layout)
    # objects, far to near is not needed: the z-buffer resolves occlusion
    for _ in range(int(rng.integers(0, 7))):
        lane = rng.uniform(-layout["road_half_w"] + 1.3, layout["road_half_w"] - 1.3)
        _vehicle(canvas, cam, lane, rng.uniform(4, 60))
    for _ in range(int(rng.integers(0, 8))):
        s = rng.choice([-1, 1])
        if rng.uniform() < 0.2:  # crossing the road
            x = rng.uniform(-layout["road_half_w"], layout["road_half_w"])
        else:
            x = s * (layout["road_half_w"] + rng.uniform(0.3, layout["pave"][s] - 0.2))
        _person(canvas, cam, x, rng.uniform(3, 40))
    for _ in range(int(rng.integers(1, 7))):
        s = rng.choice([-1, 1])
        _pole(canvas, cam, s * (layout["road_half_w"] + rng.uniform(0.2, 0.8)), rng.uniform(3, 50))
    for _ in range(int(rng.integers(0, 6))):
        s = rng.choice([-1, 1])
        _tree(canvas, cam, s * (layout["road_half_w"] + rng.uniform(0.5, layout["pave"][s] + 1.5)), rng.uniform(4, 60))
    if rng.uniform() < 0.35:
        s = rng.choice([-1, 1])
        z0 = rng.uniform(2, 20)
        _hedge(canvas, cam, s * (layout["wall_x"][s] - 0.3), z0, z0 + rng.uniform(5, 40))
    # lighting and haze: brightness, tint, fog towards the horizon colour, sensor noise
    rgb = canvas.rgb * rng.uniform(0.6, 1.25) * _hsv(rng, (0, 1), (0, 0.15), (0.9, 1.0))
    fog = 1 - np.exp(-canvas.depth / rng.uniform(60, 400))
    fog[canvas.label == SKY] = 0
    rgb = rgb * (1 - fog[..., None]) + horizon * fog[..., None]
    rgb = rgb + rng.normal(0, rng.uniform(0.005, 0.03), rgb.shape).astype(np.float32)
    image = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    depth = np.clip(canvas.depth, MIN_DEPTH_M * 0.5, SKY_DEPTH_M).astype(np.float32)
    return Scene(image_u8=image, label=canvas.label.copy(), depth_m=depth)


def colour_labels(label: np.ndarray) -> np.ndarray:
    """Class ids [H, W] -> RGB uint8 [H, W, 3] in :data:`CLASS_COLOURS`."""
    return CLASS_COLOURS[np.clip(label, 0, len(CLASSES) - 1)]
