// The browser demo: grow a VNCA step by step, damage it with the mouse, watch it regrow.
// Runs the graphs that `python export.py --tfjs=web/my_models/NAME` writes
// (vnca_tf/serving/browser_graphs.py, vnca_tf/serving/tfjs.py): encode,
// initial_cells, step, [double], picture, and follows the growth schedule of the
// model's vnca.json. `python serve_demo.py` serves it, with models.json: the
// models under web/models (shipped) and web/my_models (yours). Every random
// number comes from a seed (the sample's number and the step), so a page load
// grows the same first sample.
"use strict";

const board = document.getElementById("board");
const context = board.getContext("2d");
const state = {
  graphs: null, config: null, cells: null, latents: null, stepCount: 0, sampleSeed: 0,
  running: true, drawing: null, busy: false, errors: [], broken: {},
};

function setStatus(text) { document.getElementById("status").textContent = text; }

// Errors the page met (the browser tests read them too).
window.addEventListener("error", (event) => state.errors.push(String(event.message)));
window.addEventListener("unhandledrejection",
                        (event) => state.errors.push(String(event.reason)));

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// `path`: "models/NAME" or "my_models/NAME".
async function loadModel(path) {
  const manifest = await fetchJson(`${path}/vnca.json`);
  const graphs = {};
  try {
    for (const graph of manifest.graphs) {
      graphs[graph] = await tf.loadGraphModel(`${path}/${graph}/model.json`);
    }
  } catch (error) {
    Object.values(graphs).forEach((graph) => graph.dispose());
    throw error;
  }
  if (state.graphs) Object.values(state.graphs).forEach((graph) => graph.dispose());
  state.graphs = graphs;
  state.config = manifest.preset.model;
  state.schedule = manifest.schedule;
  state.modelPath = path;
  const results = manifest.results || {};
  document.getElementById("model-about").textContent = manifest.about || manifest.preset.name;
  const info = [];
  if (results.healing) {
    info.push(`Measured on ${results.healing.num_images} test digits: inside an erased ` +
              `square the error falls from ` +
              `${results.healing.damaged_error.toFixed(2)} (damaged) to ` +
              `${results.healing.recovered_error.toFixed(2)} (regrown)`);
  }
  if (results.log_likelihood_nats !== undefined) {
    info.push(`test log-likelihood ${results.log_likelihood_nats.toFixed(2)} nats ` +
              `(IWAE-${results.num_samples}, ${results.num_examples} test images drawn at random)`);
  }
  document.getElementById("model-info").textContent = info.length ? `${info.join("; ")}.` : "";
  if (state.drawing) state.drawing.dispose();
  state.drawing = tf.zeros([1, ...state.config.image_shape]);
}

function run(graph, inputs) {
  return state.graphs[graph].execute(inputs);
}

// Cells from latents (1, Z) or (B, Z); the step count (and the masks' seeds) start again.
function startFrom(latents) {
  tf.dispose([state.cells, state.latents]);
  state.latents = tf.keep(latents);
  state.cells = tf.keep(run("initial_cells", {latents}));
  state.stepCount = 0;
}

// Latents of sample number `seed`: the same on every load. (TensorFlow.js takes
// a seed of 0 for none, so that the seeds it gets here are odd for latents and
// even, never 0, for masks.)
function sampleLatents(seed) {
  state.sampleSeed = seed;
  return tf.randomNormal([1, state.config.latent_size], 0, 1, "float32", 2 * seed + 1);
}

// One NCA step; each cell updates with the model's probability, drawn from the
// sample's seed and the step (masks may be given).
function step(mask) {
  const config = state.config;
  const next = tf.tidy(() => {
    const [batch, height, width] = state.cells.shape;
    const seed = 2 * ((state.sampleSeed + 1) * 100003 + state.stepCount);
    const updateMask = mask || tf.cast(tf.less(
      tf.randomUniform([batch, height, width, 1], 0, 1, "float32", seed),
      config.update_probability), "float32");
    let cells = run("step", {cells: state.cells, mask: updateMask});
    // The grid divides after the steps the model's schedule names (vnca.json).
    if (state.schedule.doubles_after.includes(state.stepCount + 1)) {
      cells = run("double", {cells});
    }
    return cells;
  });
  state.cells.dispose();
  state.cells = tf.keep(next);
  state.stepCount += 1;
}

// The first picture of the batch, at the image's size; erased (all-zero) cells
// are shown empty (black), not as the likelihood's mean of a zero state.
function picture() {
  return tf.tidy(() => {
    const cells = state.cells.slice(0, 1);
    const alive = tf.cast(tf.any(tf.notEqual(cells, 0), -1, true), "float32");
    const image = run("picture", {cells}).mul(alive);
    const [height, width] = image.shape.slice(1, 3);
    const size = state.config.image_shape[0];
    // A doubling VNCA's picture is smaller while it grows: show it at full size.
    return height === size ? image.squeeze([0])
      : tf.image.resizeNearestNeighbor(image, [size, width * size / height]).squeeze([0]);
  });
}

async function draw() {
  const image = picture();
  const shown = state.drawingMode() ? tf.tidy(() => state.drawing.squeeze([0])) : image;
  const canvas = document.createElement("canvas");
  await tf.browser.toPixels(shown, canvas);
  if (shown !== image) shown.dispose();
  image.dispose();
  context.imageSmoothingEnabled = false;
  context.drawImage(canvas, 0, 0, board.width, board.height);
  document.getElementById("step-count").textContent = stageText();
}

// The step, and the grid's size: for a doubling model, its stage of growth.
function stageText() {
  const {stages, doubles_after: doublesAfter} = state.schedule;
  const side = state.cells.shape[1];
  if (!doublesAfter.length) return `step ${state.stepCount} · ${side}x${side} cells`;
  const stage = stages.indexOf(side) + 1;
  return `step ${state.stepCount} · stage ${stage} of ${stages.length}: ` +
    `${side}x${side} cells (${stages.map((s) => `${s}x${s}`).join(" → ")})`;
}

state.drawingMode = () => document.querySelector('input[name="tool"]:checked').value === "draw";

// Zeroes the cells within `radius` cells of (row, column) of the grid.
function damage(row, column, radius) {
  const next = tf.tidy(() => {
    const [, height, width] = state.cells.shape;
    const rows = tf.range(0, height).reshape([height, 1]).sub(row).square();
    const columns = tf.range(0, width).reshape([1, width]).sub(column).square();
    const keep = tf.cast(tf.greater(rows.add(columns), radius * radius), "float32");
    return state.cells.mul(keep.reshape([1, height, width, 1]));
  });
  state.cells.dispose();
  state.cells = tf.keep(next);
}

function paint(row, column, radius) {
  const size = state.config.image_shape[0];
  const next = tf.tidy(() => {
    const rows = tf.range(0, size).reshape([size, 1]).sub(row).square();
    const columns = tf.range(0, size).reshape([1, size]).sub(column).square();
    const ink = tf.cast(tf.lessEqual(rows.add(columns), radius * radius), "float32");
    return tf.maximum(state.drawing, ink.reshape([1, size, size, 1]));
  });
  state.drawing.dispose();
  state.drawing = next;
}

function regrowDrawing() {
  const latents = run("encode", {images: state.drawing});
  startFrom(latents);
  document.querySelector('input[name="tool"][value="damage"]').checked = true;
}

function pointer(event) {
  const bounds = board.getBoundingClientRect();
  const [, height, width] = state.drawingMode()
    ? [0, state.config.image_shape[0], state.config.image_shape[1]] : state.cells.shape;
  return [(event.clientY - bounds.top) / bounds.height * height,
          (event.clientX - bounds.left) / bounds.width * width, height];
}

function onPointer(event) {
  if (!(event.buttons & 1) || !state.cells) return;
  const [row, column, height] = pointer(event);
  const brush = Number(document.getElementById("brush").value);
  const radius = brush * height / state.config.image_shape[0];
  if (state.drawingMode()) paint(row, column, Math.max(radius / 2, 1));
  else damage(row, column, radius);
  draw();
}

async function loop() {
  let last = performance.now();
  const tick = async (now) => {
    const interval = 1000 / Number(document.getElementById("speed").value);
    if (state.running && state.cells && !state.busy && now - last >= interval) {
      last = now;
      state.busy = true;
      step();
      await draw();
      state.busy = false;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

// Marks a model of the list as one that cannot be used, with the reason.
function markBroken(option, error) {
  option.disabled = true;
  option.text = `${option.value.split("/")[1]} (does not load: ${error})`;
  state.broken[option.value] = String(error);
}

// Loads the first model of the list that loads (from `first` on); returns its option.
async function loadFirstWorking(select, first) {
  const options = Array.from(select.options);
  for (const option of options.slice(options.indexOf(first)).concat(options)) {
    if (option.disabled) continue;
    try {
      await loadModel(option.value);
      select.value = option.value;
      return option;
    } catch (error) {
      markBroken(option, error);
    }
  }
  throw new Error(`no model loads: ${Object.entries(state.broken)
    .map(([path, error]) => `${path}: ${error}`).join("; ")}`);
}

async function main() {
  try {
    const models = await fetchJson("models.json");
    if (!models.length) throw new Error("no models in web/models or web/my_models");
    const select = document.getElementById("model");
    for (const {path, error} of models) {
      const [folder, name] = path.split("/");
      const option = new Option(folder === "models" ? name : `${name} (yours)`, path);
      select.add(option);
      if (error) markBroken(option, error);
    }
    await loadFirstWorking(select, select.options[0]);
    select.onchange = async () => {
      const chosen = select.selectedOptions[0];
      const previous = state.modelPath;
      try {
        await loadModel(chosen.value);
      } catch (error) {
        markBroken(chosen, error);
        select.value = previous;
        setStatus(`${chosen.value} does not load (${error}); still showing ${previous}.`);
        return;
      }
      startFrom(sampleLatents(state.sampleSeed));
    };
    document.getElementById("sample").onclick = () => {
      startFrom(sampleLatents(state.sampleSeed + 1));
    };
    document.getElementById("reset").onclick = () => startFrom(state.latents.clone());
    document.getElementById("erase").onclick = () => {
      const [, height, width] = state.cells.shape;
      damage(height / 2, width / 2, height / 4);
      draw();
    };
    document.getElementById("pause").onclick = (event) => {
      state.running = !state.running;
      event.target.textContent = state.running ? "Pause" : "Run";
    };
    document.getElementById("regrow").onclick = () => regrowDrawing();
    for (const name of ["pointerdown", "pointermove"]) board.addEventListener(name, onPointer);
    startFrom(sampleLatents(0));
    await draw();
    setStatus(`Running on TensorFlow.js ${tf.version.tfjs} (${tf.getBackend()} backend).`);
    loop();
  } catch (error) {
    setStatus(`Could not start: ${error}`);
    throw error;
  }
}

// What the browser tests drive: fixed latents, masks and step counts.
window.vnca = {
  state,
  start: (latents) => { startFrom(tf.tensor2d(latents)); },
  sample: (seed) => { startFrom(sampleLatents(seed)); },
  latents: () => state.latents.array(),
  stage: () => stageText(),
  steps: (count, allCells) => {
    for (let i = 0; i < count; i++) {
      step(allCells ? tf.ones([...state.cells.shape.slice(0, 3), 1]) : undefined);
    }
  },
  load: (path) => loadModel(path),
  image: () => tf.tidy(() => run("picture", {cells: state.cells})).array(),
  shown: () => tf.tidy(() => picture()).array(),
  cells: () => state.cells.array(),
  drawing: () => state.drawing.array(),
  damage,
  paint,
  regrowDrawing,
  draw,
};

main();
