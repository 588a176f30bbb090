"""Camera, poses and the height map: geometry, validation, files."""

import numpy as np
import pytest

import heightfusion as hf
from heightfusion.heightmap import cell_barycentric


def test_camera_project_unproject_roundtrip():
    cam = hf.PinholeCamera(640, 480, 520.0, 510.0, 319.5, 239.5)
    pts = np.array([[0.1, -0.2, 1.5], [-0.4, 0.3, 3.0]])
    uv = cam.project(pts)
    np.testing.assert_allclose(cam.unproject(uv, pts[:, 2]), pts, atol=1e-12)
    assert np.isnan(cam.project([[0.0, 0.0, -1.0]])).all()
    np.testing.assert_allclose(cam.K @ [0.1, -0.2, 1.0], [*cam.project([[0.1, -0.2, 1.0]])[0], 1.0])
    rays = cam.pixel_rays()
    assert rays.shape == (480, 640, 3) and np.allclose(rays[..., 2], 1.0)
    np.testing.assert_allclose(cam.project(rays[240, 320]), [320, 240])


def test_camera_scaled_keeps_pixel_centres():
    cam = hf.PinholeCamera(640, 480, 520.0, 510.0, 319.5, 239.5).scaled(0.5)
    assert (cam.width, cam.height) == (320, 240)
    assert cam.cx == pytest.approx(159.5) and cam.fx == pytest.approx(260.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fx=0.0), "fx"),
        (dict(fy=-5.0), "fy"),
        (dict(fx=float("nan")), "fx"),
        (dict(width=0), "width"),
        (dict(height=10.5), "height"),
        (dict(cx=float("inf")), "cx"),
        (dict(distortion=[0.1, 0.2]), "distortion"),
    ],
)
def test_camera_rejects_bad_numbers(kwargs, match):
    args = dict(width=64, height=48, fx=50.0, fy=50.0, cx=31.5, cy=23.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hf.PinholeCamera(**args)


def test_undistort_image_inverts_distortion():
    cam = hf.PinholeCamera(64, 48, 60.0, 60.0, 31.5, 23.5, distortion=(-0.2, 0.05, 0.0, 0.0, 0.0))
    assert cam.distortion is not None
    ideal = hf.PinholeCamera(64, 48, 60.0, 60.0, 31.5, 23.5, distortion=(0, 0, 0, 0))
    assert ideal.distortion is None and ideal.undistort_image(np.zeros((48, 64, 3), np.uint8)).shape == (48, 64, 3)
    img = np.zeros((48, 64, 3), np.uint8)
    img[20:28, 28:36] = 255
    out = cam.undistort_image(img)
    assert out.shape == img.shape and out[24, 32].max() == 255  # centre pixel barely moves
    with pytest.raises(ValueError, match="does not match"):
        cam.undistort_image(np.zeros((10, 10, 3), np.uint8))


def test_quaternion_roundtrip_and_tum():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = hf.quat_to_matrix(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        q2 = hf.matrix_to_quat(R)
        np.testing.assert_allclose(q2, q * np.sign(q[3]), atol=1e-9)
    T = hf.pose_from_tum(1, 2, 3, 0, 0, np.sin(0.25), np.cos(0.25))
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [np.cos(0.5), np.sin(0.5), 0], atol=1e-12)
    np.testing.assert_allclose(hf.pose_from_tum(*hf.pose_to_tum(T)), T, atol=1e-12)
    with pytest.raises(ValueError, match="quaternion"):
        hf.quat_to_matrix([0, 0, 0, 0])


def test_look_at_and_inverse():
    T = hf.look_at([1.0, 2.0, 3.0], [1.0, 5.0, 3.0])
    hf.validate_pose(T)
    np.testing.assert_allclose(T[:3, 2], [0, 1, 0], atol=1e-12)  # forward
    np.testing.assert_allclose(T[:3, 1], [0, 0, -1], atol=1e-12)  # image down = world down
    np.testing.assert_allclose(hf.invert_pose(T) @ T, np.eye(4), atol=1e-12)
    with pytest.raises(ValueError, match="parallel"):
        hf.look_at([0, 0, 1], [0, 0, 0])
    with pytest.raises(ValueError, match="coincide"):
        hf.look_at([0, 0, 1], [0, 0, 1])


@pytest.mark.parametrize(
    "T, match",
    [
        (np.diag([1.0, 1.0, -1.0, 1.0]), "rigid"),
        (np.eye(4) * 2, "last row|rigid"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.eye(3), "shape"),
        ("pose", "numeric"),
    ],
)
def test_validate_pose_rejects(T, match):
    with pytest.raises(ValueError, match=match):
        hf.validate_pose(T)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(0, 0)), "at least"),
        (dict(shape=(1, 5)), "at least"),
        (dict(cell_size=0.0), "cell_size"),
        (dict(origin=(0.0, np.nan)), "origin"),
        (dict(prior_sigma=-1.0), "prior_sigma"),
    ],
)
def test_heightmap_rejects(kwargs, match):
    args = dict(origin=(0.0, 0.0), cell_size=0.1, shape=(4, 5))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hf.HeightMap(**args)


def test_heightmap_geometry_and_triangulation():
    grid = hf.HeightMap((1.0, -2.0), 0.5, (3, 4))
    assert grid.shape == (3, 4) and grid.num_triangles == 12 and grid.extent == (1.0, 2.5, -2.0, -1.0)
    xy = grid.vertex_xy()
    np.testing.assert_allclose(xy[2, 1], [1.5, -1.0])  # vertex (i, j) at x0 + j*c, y0 + i*c
    np.testing.assert_array_equal(grid.vertex_xy((slice(1, 3), slice(1, 2))), xy[1:3, 1:2])  # a window of them
    tris = grid.triangles()
    assert tris.shape == (12, 3)
    np.testing.assert_array_equal(tris[0], [0, 1, 5])  # k=0 of cell (0, 0)
    np.testing.assert_array_equal(tris[1], [0, 5, 4])  # k=1
    np.testing.assert_array_equal(grid.triangle_vertex_ids(np.array([0, 1, 7, -1])), [[0, 1, 5], [0, 5, 4], [4, 9, 8], [-1, -1, -1]])
    # Every cell's two triangles tile it: areas add up, orientation consistent (counter-clockwise in XY).
    p = grid.vertices()[tris][..., :2]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    assert np.all(cross > 0) and np.isclose(0.5 * cross.sum(), 1.5 * 1.0)


def test_sample_interpolates_on_the_triangles():
    grid = hf.HeightMap((0.0, 0.0), 1.0, (2, 2))
    grid.heights[:] = [[0.0, 1.0], [2.0, 4.0]]
    # On the diagonal both triangles agree; off it, each uses its own plane.
    assert grid.sample(np.array([0.5, 0.5])) == pytest.approx(2.0)
    assert grid.sample(np.array([0.75, 0.25])) == pytest.approx(0.75 * 1.0 + 0.25 * 3.0)  # k=0
    assert grid.sample(np.array([0.25, 0.75])) == pytest.approx(0.75 * 2.0 + 0.25 * 2.0)  # k=1
    assert np.isnan(grid.sample(np.array([1.5, 0.5])))
    b = cell_barycentric(np.array(0.75), np.array(0.25), np.array(0))
    np.testing.assert_allclose(b, [0.25, 0.5, 0.25])


def test_save_load_roundtrip_and_atomic(tmp_path):
    grid = hf.HeightMap((1.0, 2.0), 0.05, (5, 7), initial_height=0.3, prior_sigma=0.5)
    grid.heights[2, 3] = 1.25
    grid.information[1, 1] = 400.0
    grid.colors[0, 0] = (1.0, 0.0, 0.25)
    grid.observed[4, 6] = True
    grid.systematic_sigma[3, 2] = 0.004
    path = tmp_path / "sub" / "map.npz"
    hf.save_heightmap(path, grid)
    assert [p.name for p in path.parent.iterdir()] == ["map.npz"]  # no temp file left behind
    back = hf.load_heightmap(path)
    for key in ("heights", "information", "colors", "observed", "origin", "systematic_sigma"):
        np.testing.assert_array_equal(getattr(back, key), getattr(grid, key))
    assert back.cell_size == grid.cell_size
    with np.load(path) as data:
        assert set(data.files) == {"heights", "information", "colors", "observed", "origin", "cell_size",
                                   "prior_height", "prior_information", "systematic_sigma"}
        older = {key: data[key] for key in data.files if key != "systematic_sigma"}  # a file from before it
    np.savez(tmp_path / "older.npz", **older)
    assert not hf.load_heightmap(tmp_path / "older.npz").systematic_sigma.any()
    np.savez(tmp_path / "bad.npz", **older, systematic_sigma=-grid.systematic_sigma)
    with pytest.raises(ValueError, match="bad.npz: 'systematic_sigma' holds negative values"):
        hf.load_heightmap(tmp_path / "bad.npz")


def test_sigma_adds_the_systematic_part_in_quadrature():
    grid = hf.HeightMap((0.0, 0.0), 0.1, (2, 3))
    grid.information[:] = 1e6  # 1 mm
    grid.information[0, 0] = 0.0  # nothing known
    grid.systematic_sigma[1, :] = 0.002
    np.testing.assert_allclose(grid.sigma[1], np.hypot(0.001, 0.002), rtol=1e-6)
    np.testing.assert_allclose(grid.sigma[0, 1:], 0.001, rtol=1e-6)
    assert np.isinf(grid.sigma[0, 0])


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "map.npz"
    grid = hf.HeightMap((0.0, 0.0), 0.1, (3, 3))
    hf.save_heightmap(path, grid)
    before = path.read_bytes()
    broken = grid.copy()
    broken.heights = object()  # savez fails mid-write
    with pytest.raises(Exception):
        hf.save_heightmap(path, broken)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["map.npz"]


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such"):
        hf.load_heightmap(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="garbage.npz"):
        hf.load_heightmap(garbage)
    partial = tmp_path / "partial.npz"
    np.savez(partial, heights=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="missing arrays"):
        hf.load_heightmap(partial)


def test_export_ply(tmp_path):
    grid = hf.HeightMap((0.0, 0.0), 0.1, (3, 4))
    grid.colors[:] = (1.0, 0.5, 0.0)
    grid.observed[:2, :2] = True
    grid.systematic_sigma[1, 1] = 0.5  # with the prior's 1 m: sqrt(1.25)
    path = tmp_path / "mesh.ply"
    hf.export_ply(path, grid)
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    assert b"element vertex 12" in header and b"element face 12" in header
    assert len(body) == 12 * 19 + 12 * 13 and b"property float sigma" in header
    vertices = np.frombuffer(body[: 12 * 19], dtype=[("p", "<f4", 3), ("c", "u1", 3), ("s", "<f4")])
    np.testing.assert_allclose(vertices["p"][5], [0.1, 0.1, 0.0])
    assert tuple(vertices["c"][0]) == (255, 128, 0)
    np.testing.assert_allclose(vertices["s"], np.hypot(1.0 / np.sqrt(grid.information), grid.systematic_sigma).ravel(),
                               rtol=1e-6)
    assert vertices["s"][5] == pytest.approx(np.sqrt(1.25))
    hf.export_ply(path, grid, observed_only=True)
    assert b"element face 2" in path.read_bytes()


def test_import_creates_no_gl_context():
    import subprocess
    import sys

    code = "import heightfusion, heightfusion.render.context as c; assert c._context is None; hf = heightfusion.make_renderer('gl'); assert c._context is None"
    subprocess.run([sys.executable, "-c", code], check=True)
