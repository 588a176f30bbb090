"""The viewer's 3D drawing against the GL renderer: the same camera sees the map at the same pixels.

MapView draws with any moderngl context; here the headless one, into a framebuffer the camera's size.
"""

import numpy as np
from conftest import bumpy_grid

import heightfusion as hf
from heightfusion.render.context import get_context
from heightfusion.viewer.layout import Rect
from heightfusion.viewer.map_view import BACKGROUND, MapView, observed_cell_triangles
from heightfusion.viewer.orbit import OrbitCamera

CAM = hf.PinholeCamera(96, 72, 80.0, 80.0, 47.5, 35.5)
BACKGROUND_RGB = np.rint(np.array(BACKGROUND[:3]) * 255)


def draw_map(grid, cam, T_wc, hide_unobserved=False):
    """(H, W, 3) uint8 of MapView's drawing of ``grid`` from ``T_wc``, top row first."""
    ctx = get_context()
    ctx.__enter__()
    size = (cam.width, cam.height)
    fbo = ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, 4)], depth_attachment=ctx.depth_renderbuffer(size))
    view = MapView(ctx)
    try:
        fbo.use()
        view.update(grid, "color")
        view.draw(Rect(0, 0, cam.width, cam.height), T_wc, cam, hide_unobserved=hide_unobserved)
        data = fbo.read(components=3, alignment=1)
    finally:
        view.release()
        for attachment in (*fbo.color_attachments, fbo.depth_attachment):
            attachment.release()
        fbo.release()
    return np.frombuffer(data, np.uint8).reshape(cam.height, cam.width, 3)[::-1]


def test_map_view_covers_the_pixels_the_renderer_sees(gl_renderer):
    grid = bumpy_grid(shape=(12, 16), amplitude=0.05)
    grid.observed[:] = True
    T = hf.look_at([-0.4, 0.3, 0.8], [0.9, 0.35, 0.0])
    drawn = np.abs(draw_map(grid, CAM, T).astype(int) - BACKGROUND_RGB).sum(axis=2) > 3
    seen = gl_renderer.render(grid, CAM, T).mask
    assert seen.mean() > 0.3
    assert (drawn != seen).mean() < 0.01  # silhouette pixels may differ (GL's coverage rule vs exact hits)


def test_map_view_keeps_the_image_orientation(gl_renderer):
    """A map red on its west half and blue on its east half: the sides land where the renderer puts them."""
    grid = hf.HeightMap((0.0, 0.0), 0.1, (12, 16))
    grid.observed[:] = True
    grid.colors[:, :8] = [1.0, 0.0, 0.0]
    grid.colors[:, 8:] = [0.0, 0.0, 1.0]
    T = hf.look_at([0.75, -0.6, 1.0], [0.75, 0.55, 0.0])
    image = draw_map(grid, CAM, T).astype(int)
    color = gl_renderer.render(grid, CAM, T).color
    red_truth = color[..., 0] > 0.9
    blue_truth = color[..., 2] > 0.9
    assert red_truth.mean() > 0.1 and blue_truth.mean() > 0.1
    assert (image[red_truth][:, 0] > image[red_truth][:, 2] + 50).mean() > 0.98
    assert (image[blue_truth][:, 2] > image[blue_truth][:, 0] + 50).mean() > 0.98


def test_observed_cell_triangles_are_the_cells_with_an_observed_corner():
    rng = np.random.default_rng(3)
    grid = hf.HeightMap((0.0, 0.0), 0.1, (7, 9))
    observed = rng.random(grid.shape) < 0.15
    triangles = grid.triangles()
    corners = observed.reshape(-1)[grid.triangle_vertex_ids(np.arange(len(triangles)))]
    cell_seen = np.repeat(corners.reshape(-1, 2, 3).any(axis=(1, 2)), 2)  # both triangles of a cell
    np.testing.assert_array_equal(observed_cell_triangles(triangles, observed), triangles[cell_seen])
    assert 0 < cell_seen.mean() < 1
    assert observed_cell_triangles(triangles, np.zeros_like(observed)).shape == (0, 3)


def test_map_view_hides_unobserved_surface(gl_renderer):
    """West half observed (red), east half not: hidden, the east shows background and the red is all drawn."""
    grid = hf.HeightMap((0.0, 0.0), 0.1, (12, 16))
    grid.colors[:, :8] = [1.0, 0.0, 0.0]
    grid.colors[:, 8:] = [0.0, 0.0, 1.0]
    T = hf.look_at([0.75, -0.6, 1.0], [0.75, 0.55, 0.0])
    color = gl_renderer.render(grid, CAM, T).color
    west, east = color[..., 0] > 0.9, color[..., 2] > 0.9
    east_inside = east & ~np.roll(west, 2, axis=1)  # away from the cells that straddle the edge
    grid.observed[:, :8] = True
    shown, everything = (draw_map(grid, CAM, T, hide).astype(int) for hide in (True, False))
    background = lambda image: np.abs(image - BACKGROUND_RGB).sum(axis=2) <= 3  # noqa: E731
    assert east_inside.mean() > 0.1 and not background(everything)[east_inside].any()
    assert background(shown)[east_inside].all()
    assert (shown[west][:, 0] > shown[west][:, 2] + 50).mean() > 0.98


def test_orbit_camera_frames_the_map_and_moves_with_the_mouse():
    grid = bumpy_grid(shape=(12, 16))
    orbit = OrbitCamera.framing(grid)
    cam = orbit.camera(200, 150)
    corners = np.array([[x, y, 0.05] for x in grid.extent[:2] for y in grid.extent[2:]])
    T_cw = np.linalg.inv(orbit.pose())
    pc = corners @ T_cw[:3, :3].T + T_cw[:3, 3]
    u, v = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx, cam.fy * pc[:, 1] / pc[:, 2] + cam.cy
    assert (pc[:, 2] > 0).all() and (u > 0).all() and (u < 200).all() and (v > 0).all() and (v < 150).all()
    azimuth, distance, target = orbit.azimuth, orbit.distance, orbit.target.copy()
    orbit.orbit(40, 0)
    orbit.zoom(2)
    assert orbit.azimuth != azimuth and orbit.distance < distance
    orbit.pan(10, 0, 150)
    assert np.linalg.norm(orbit.target - target) > 0
    orbit.orbit(0, 1e6)  # elevation is clamped: the view never flips over the top
    assert orbit.elevation <= np.radians(89.0)
