"""The browser demo (web/) in a real headless Chromium, driven by Selenium:
it loads without errors, grows what the SavedModels grow, the brush erases
cells that then regrow, and a drawn digit is regrown.

Needs chromium and chromedriver (Debian: apt-get install chromium
chromium-driver; .ci/run installs them) and web/node_modules (npm ci --prefix
web, in the README's test command). Without a browser these tests are
skipped, except under CI (CI=true), where that is a failure.
"""

import base64
import io
import json
import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vnca_tf.models import storage
from vnca_tf.serving import demo_server
from vnca_tf.serving.loaded import LoadedModel

pytestmark = [pytest.mark.browser, pytest.mark.slow]
selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

MODELS = [model["path"] for model in demo_server.list_models()]
DEFAULT_NAME = "mnist_regrow_long_cpu"  # The model the page opens with.
DEFAULT_CONFIG = storage.read_saved_model_assets(os.path.join("saved_models", DEFAULT_NAME, "1"))[
    0
].model
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
)


def _browser_paths():
    paths = [shutil.which(name) for name in ("chromium", "chromedriver")]
    missing = [
        name for name, path in zip(("chromium", "chromedriver"), paths, strict=True) if not path
    ]
    if not os.path.isfile(demo_server.TFJS_SCRIPT):
        missing.append("web/node_modules (npm ci --prefix web)")
    if missing:
        message = (
            f"The browser tests need {', '.join(missing)}; on Debian: apt-get "
            "install chromium chromium-driver, and npm ci --prefix web."
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return paths


@pytest.fixture(scope="module")
def page_url():
    server = demo_server.make_server(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(chromedriver), options=options)
    driver.set_script_timeout(300)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, page_url):
    """The demo freshly loaded and running."""
    browser.get(page_url)
    deadline = time.time() + 120
    while time.time() < deadline:
        status = browser.find_element(By.ID, "status").text
        if status.startswith(("Running", "Could not start")):
            break
        time.sleep(0.2)
    assert status.startswith("Running on TensorFlow.js"), status
    return browser


def _pause(page):
    button = page.find_element(By.ID, "pause")
    if button.text == "Pause":
        button.click()
    assert button.text == "Run"
    assert page.execute_script("return window.vnca.state.running") is False


def _grow(page, latents, steps, all_cells=False):
    """Starts the page from ``latents``, runs ``steps`` steps; returns its
    mean images (B, H, W, C)."""
    page.execute_script(
        "window.vnca.start(arguments[0]);window.vnca.steps(arguments[1], arguments[2]);",
        np.asarray(latents).tolist(),
        steps,
        all_cells,
    )
    return np.asarray(page.execute_script("return window.vnca.image()"), np.float32)


def _errors(page):
    severe = [entry["message"] for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    return severe + page.execute_script("return window.vnca.state.errors")


def _canvas(page):
    data = page.execute_script("return document.getElementById('board').toDataURL()")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",")[1]))))


def _growth_steps(config):
    if config.decoder == "doubling":
        return (config.num_doublings + 1) * config.steps_per_stage
    return config.max_steps


def _saved_model_growth(name, latents, steps):
    """The shipped SavedModel's mean images for ``latents`` grown ``steps``
    steps with every cell updating: its grow signature when every cell updates
    anyway, else its browser signatures with all-ones masks."""
    loaded = LoadedModel(os.path.join("saved_models", name, "1"))
    signatures = loaded.signatures
    latents = tf.constant(latents, tf.float32)
    if loaded.config.update_probability == 1.0:
        return signatures["grow"](latents=latents, seed=tf.constant(0, tf.int64))["frames"][-1]
    cells = signatures["browser_initial_cells"](latents=latents)["cells"]
    for _ in range(steps):
        cells = signatures["browser_step"](cells=cells, mask=tf.ones([*cells.shape[:3], 1]))[
            "cells"
        ]
    return signatures["browser_picture"](cells=cells)["image"]


def test_the_page_loads_without_errors_and_the_automaton_runs(page):
    assert page.execute_script("return window.vnca.state.modelPath") == MODELS[0]
    assert MODELS[0] == f"models/{DEFAULT_NAME}"  # The regrowing model opens first.
    first = _canvas(page)
    time.sleep(1.5)  # 10 steps a second by default.
    later = _canvas(page)
    assert first.shape == later.shape == (448, 448, 4)
    assert np.abs(first.astype(int) - later.astype(int)).mean() > 0.5
    info = page.find_element(By.ID, "model-info").text
    assert "test log-likelihood" in info and "nats" in info
    assert _errors(page) == []


@pytest.mark.parametrize("path", MODELS)
def test_the_browser_grows_what_the_saved_model_grows(page, path, rng):
    _pause(page)
    page.execute_script("return window.vnca.load(arguments[0])", path)
    config = storage.read_saved_model_assets(
        os.path.join("saved_models", os.path.basename(path), "1")
    )[0].model
    latents = rng.standard_normal((3, config.latent_size)).astype(np.float32)
    steps = _growth_steps(config)
    browser = _grow(page, latents, steps, all_cells=True)
    expected = np.asarray(_saved_model_growth(os.path.basename(path), latents, steps))
    assert browser.shape == expected.shape == (3, *config.image_shape)
    np.testing.assert_allclose(browser, expected, atol=1e-3)
    assert expected.std() > 0.1  # Digits, not a blank.
    assert _errors(page) == []


def test_the_page_explains_itself_and_every_control_is_reachable_by_keyboard(page):
    steps = [item.text for item in page.find_elements(By.CSS_SELECTOR, "#steps li")]
    assert [text.split(".")[0] for text in steps] == ["Grow", "Erase", "Watch it regrow"]
    with open(os.path.join(demo_server.WEB_ROOT, "models", DEFAULT_NAME, "vnca.json")) as f:
        about = json.load(f)["about"]
    assert page.find_element(By.ID, "model-about").text == about
    assert about.startswith("Every cell of a 28x28 grid") and "mnist" not in about
    info = page.find_element(By.ID, "model-info").text
    assert re.search(r"error falls from 0\.\d\d \(damaged\) to 0\.\d\d \(regrown\)", info), info
    board = page.find_element(By.ID, "board")
    assert board.size == {"width": 448, "height": 448}
    assert board.value_of_css_property("image-rendering") == "pixelated"  # Crisp cells.
    controls = ["model", "sample", "erase", "pause", "reset", "speed", "brush", "regrow"]
    page.find_element(By.TAG_NAME, "body").click()
    reached = set()
    for _ in range(20):
        ActionChains(page).send_keys(Keys.TAB).perform()
        reached.add(page.execute_script("return document.activeElement.id"))
    assert set(controls) <= reached, set(controls) - reached
    outline = page.execute_script(
        "const b = document.getElementById('sample'); b.focus();"
        "return getComputedStyle(b).outlineStyle"
    )
    assert outline != "none"  # A visible focus ring.
    assert _errors(page) == []


def test_every_load_grows_the_same_first_sample(browser, page_url):
    firsts = []
    for _ in range(2):
        browser.get(page_url)
        deadline = time.time() + 120
        while time.time() < deadline and not browser.find_element(By.ID, "status").text.startswith(
            ("Running", "Could not start")
        ):
            time.sleep(0.2)
        latents = np.asarray(browser.execute_script("return window.vnca.latents()"))
        _pause(browser)
        browser.execute_script("window.vnca.sample(0); window.vnca.steps(40);")
        firsts.append((latents, np.asarray(browser.execute_script("return window.vnca.image()"))))
    (latents, image), (again_latents, again_image) = firsts
    np.testing.assert_array_equal(again_latents, latents)  # The page's own first sample.
    np.testing.assert_array_equal(again_image, image)  # Its masks are seeded too.
    browser.execute_script("window.vnca.sample(1); window.vnca.steps(40);")
    other = np.asarray(browser.execute_script("return window.vnca.image()"))
    assert np.abs(other - image).mean() > 0.01  # Another sample: another digit.
    assert _errors(browser) == []


def test_erased_cells_show_empty_and_a_doubling_model_shows_its_stage(page):
    _pause(page)
    page.execute_script("window.vnca.sample(0); window.vnca.steps(arguments[0]);", 64)
    page.find_element(By.ID, "erase").click()
    cells = np.asarray(page.execute_script("return window.vnca.cells()"))
    erased = np.all(cells[0] == 0, axis=-1)
    assert erased.sum() > 100
    model_mean = np.asarray(page.execute_script("return window.vnca.image()"))[0, ..., 0]
    shown = np.asarray(page.execute_script("return window.vnca.shown()"))[..., 0]
    assert np.all(shown[erased] == 0) and np.all(shown[~erased] == model_mean[~erased])
    assert np.abs(model_mean[erased] - 0.5).max() < 0.1  # What it showed before: grey.
    page.execute_script("return window.vnca.load('models/mnist_cpu')")
    page.execute_script("window.vnca.sample(0)")
    stages = []
    for steps in (0, 8, 16, 40):  # After steps 0, 8, 24 and 64; it doubles after 8, 16, 24, 32.
        page.execute_script("window.vnca.steps(arguments[0])", steps)
        stages.append(page.execute_script("return window.vnca.stage()"))
    assert stages[0].startswith("step 0 · stage 1 of 5: 2x2 cells")
    assert "stage 2 of 5: 4x4 cells" in stages[1] and "stage 4 of 5: 16x16" in stages[2]
    assert stages[3].startswith("step 64 · stage 5 of 5: 32x32 cells")
    assert stages[0].endswith("(2x2 → 4x4 → 8x8 → 16x16 → 32x32)")
    assert _errors(page) == []


def _stroke(page, points):
    """A mouse stroke through ``points`` (fractions of the canvas' width and
    height) with the left button held."""
    board = page.find_element(By.ID, "board")
    size = board.size
    offsets = [(int((x - 0.5) * size["width"]), int((y - 0.5) * size["height"])) for x, y in points]
    actions = ActionChains(page, duration=20)
    actions.move_to_element_with_offset(board, *offsets[0]).click_and_hold()
    for previous, offset in zip(offsets[:-1], offsets[1:], strict=True):
        actions.move_by_offset(offset[0] - previous[0], offset[1] - previous[1])
    actions.release().perform()


def test_the_brush_erases_cells_and_they_regrow(page, rng, tmp_path):
    _pause(page)
    latents = rng.standard_normal((2, DEFAULT_CONFIG.latent_size)).astype(np.float32)
    grown = _grow(page, latents, DEFAULT_CONFIG.max_steps)
    before = np.asarray(page.execute_script("return window.vnca.cells()"))
    _stroke(page, [(0.2, 0.45), (0.5, 0.5), (0.8, 0.55)])  # Across the middle.
    after = np.asarray(page.execute_script("return window.vnca.cells()"))
    erased = np.all(after == 0, axis=-1)  # (B, H, W)
    assert np.array_equal(erased, np.broadcast_to(erased[:1], erased.shape))  # One brush.
    region = erased[0]
    rows, columns = np.nonzero(region)
    # The default brush (radius 4 cells) along the stroke: rows ~9-19, columns ~1-26.
    assert 100 < region.sum() < 350, region.sum()
    assert rows.min() >= 7 and rows.max() <= 21 and columns.max() - columns.min() >= 18
    np.testing.assert_array_equal(after[:, ~region], before[:, ~region])
    damaged = np.asarray(page.execute_script("return window.vnca.image()"), np.float32)
    page.execute_script("window.vnca.steps(arguments[0])", DEFAULT_CONFIG.max_steps)
    regrown = np.asarray(page.execute_script("return window.vnca.image()"), np.float32)
    damaged_error = np.abs(damaged - grown)[:, region].mean()
    regrown_error = np.abs(regrown - grown)[:, region].mean()
    print(f"error in the erased region: {damaged_error:.4f} damaged, {regrown_error:.4f} regrown")
    assert regrown_error < 0.25 * damaged_error  # Measured: 0.13 of it.
    # What the README shows: the first sample's regrowth, as the page draws it.
    page.execute_script("return window.vnca.draw()")
    screenshot = tmp_path / "demo.png"
    page.save_screenshot(str(screenshot))
    if os.environ.get("VNCA_DEMO_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["VNCA_DEMO_SCREENSHOT"])
    assert Image.open(screenshot).size[0] == 1200  # The window, as --window-size sets it.
    assert _errors(page) == []


def test_a_drawn_digit_regrows_closer_than_a_sample(page, rng):
    _pause(page)
    page.find_element(By.CSS_SELECTOR, 'input[name="tool"][value="draw"]').click()
    brush = page.find_element(By.ID, "brush")
    for _ in range(2):  # From 4 cells to 2: a pen about as wide as MNIST's strokes.
        brush.send_keys(Keys.ARROW_LEFT)
    assert brush.get_attribute("value") == "2"
    # A zero: an ellipse around the middle.
    angles = np.linspace(0, 2 * np.pi, 25)
    _stroke(page, list(zip(0.5 + 0.17 * np.sin(angles), 0.5 + 0.27 * np.cos(angles), strict=True)))
    drawing = np.asarray(page.execute_script("return window.vnca.drawing()"), np.float32)
    assert 40 < drawing.sum() < 200, drawing.sum()
    page.find_element(By.ID, "regrow").click()
    assert (
        page.execute_script("return document.querySelector('input[name=\"tool\"]:checked').value")
        == "damage"
    )
    page.execute_script("window.vnca.steps(arguments[0])", DEFAULT_CONFIG.max_steps)
    regrown = np.asarray(page.execute_script("return window.vnca.image()"), np.float32)
    samples = _grow(
        page, rng.standard_normal((4, DEFAULT_CONFIG.latent_size)), DEFAULT_CONFIG.max_steps
    )
    regrown_error = np.abs(regrown - drawing).mean()
    sample_errors = np.abs(samples - drawing).mean(axis=(1, 2, 3))
    print(
        f"error to the drawing: {regrown_error:.4f} regrown, "
        f"{sample_errors.mean():.4f} (min {sample_errors.min():.4f}) for samples"
    )
    assert regrown_error < sample_errors.min()  # Measured: 0.10 against 0.13 at best.
    assert _errors(page) == []


def test_a_model_that_does_not_load_is_listed_with_its_error_and_the_others_work(browser, page_url):
    # Two of yours: a manifest cut short, and one whose graphs are missing,
    # ranked first (it claims the best healing) so that the page tries it first.
    mine = os.path.join(demo_server.WEB_ROOT, "my_models")
    broken = {
        name: os.path.join(mine, name) for name in ("vnca_test_no_graphs", "vnca_test_bad_manifest")
    }
    try:
        with open(
            os.path.join(demo_server.WEB_ROOT, "models", DEFAULT_NAME, demo_server.MANIFEST)
        ) as f:
            manifest = json.load(f)
        manifest["results"]["healing"]["recovered_over_damaged"] = 0.01
        for folder in broken.values():
            os.makedirs(folder)
        with open(os.path.join(broken["vnca_test_no_graphs"], demo_server.MANIFEST), "w") as f:
            json.dump(manifest, f)
        with open(os.path.join(broken["vnca_test_bad_manifest"], demo_server.MANIFEST), "w") as f:
            f.write('{"preset": ')
        browser.get(page_url)
        deadline = time.time() + 120
        while time.time() < deadline and not browser.find_element(By.ID, "status").text.startswith(
            ("Running", "Could not start")
        ):
            time.sleep(0.2)
        assert browser.find_element(By.ID, "status").text.startswith("Running on TensorFlow.js")
        assert browser.execute_script("return window.vnca.state.modelPath") == (
            f"models/{DEFAULT_NAME}"
        )
        options = {
            option.get_attribute("value"): option
            for option in browser.find_elements(By.CSS_SELECTOR, "#model option")
        }
        for name in broken:
            option = options[f"my_models/{name}"]
            assert option.get_attribute("disabled") == "true"
            assert option.text.startswith(f"{name} (does not load: ")
        assert (
            "vnca.json does not read: JSONDecodeError"
            in options["my_models/vnca_test_bad_manifest"].text
        )
        assert options[f"models/{DEFAULT_NAME}"].get_attribute("disabled") is None
    finally:
        for folder in broken.values():
            shutil.rmtree(folder, ignore_errors=True)
