/**
 * @file The sampling page of a web bundle: opens the bundle next to it (bundle.json) with the browser
 * runtime, fills the class / steps / guidance / seed controls from the manifest (no steps for TarFlow), samples on
 * navigator.gpu with a progress bar, and draws each image (values mapped from the bundle's range to
 * 0..255, as `kiln sample` maps them). Says so plainly when WebGPU is missing. For tests it exposes
 * `window.kiln`: { ready (resolves when the bundle is open, rejects on failure), sample(request), last }.
 */
import { KilnWebSampler, type SampleRequest, type SampleResult, imageRgba } from '../runtime/index.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLDivElement>('status');
const progress = $<HTMLProgressElement>('progress');
const classSel = $<HTMLSelectElement>('class');
const stepsIn = $<HTMLInputElement>('steps');
const cfgIn = $<HTMLInputElement>('cfg');
const seedIn = $<HTMLInputElement>('seed');
const button = $<HTMLButtonElement>('sample');

interface PageApi {
  ready: Promise<void>;
  sample(r?: Partial<SampleRequest>): Promise<SampleResult>;
  last?: SampleResult;
  adapter?: string;
}
const api = {} as PageApi;
(window as unknown as { kiln: PageApi }).kiln = api;

function say(text: string, error = false): void {
  status.textContent = text;
  status.className = error ? 'error' : '';
}

function draw(r: SampleResult, sampler: KilnWebSampler): void {
  const box = $<HTMLDivElement>('images');
  box.replaceChildren();
  const [, , H, W] = r.images.shape as [number, number, number, number];
  r.labels.forEach((label, b) => {
    const fig = document.createElement('figure');
    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    canvas.dataset.index = String(b);
    canvas.getContext('2d')!.putImageData(new ImageData(imageRgba(r.images, b, sampler.manifest.range), W, H), 0, 0);
    const cap = document.createElement('figcaption');
    cap.textContent = sampler.manifest.generator.classNames[label] ?? String(label);
    fig.append(canvas, cap);
    box.append(fig);
  });
}

async function start(): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    say('WebGPU is not available in this browser, so the model cannot run here. Use a recent Chrome or Edge (or Firefox with WebGPU enabled), served over https or from localhost.', true);
    throw new Error('WebGPU is not available');
  }
  say('compiling the programs for your GPU…');
  const sampler = await KilnWebSampler.open(new URL('./', location.href));
  const m = sampler.manifest;
  api.adapter = sampler.adapterInfo;
  $<HTMLParagraphElement>('model').textContent = `${m.name}: ${m.generator.batch} samples per run, ${m.generator.classNames.length} classes, on ${sampler.adapterInfo} (${sampler.variant} kernels)`;
  classSel.replaceChildren(...m.generator.classNames.map((n, i) => new Option(`${i}: ${n}`, String(i))));
  stepsIn.value = String(m.sampler.defaultSteps);
  cfgIn.value = String(m.sampler.defaultCfg);
  seedIn.value = String(m.sampler.defaultSeed);
  let busy = false;
  api.sample = async (req = {}) => {
    if (busy) throw new Error('a sampling run is in progress');
    busy = true;
    button.disabled = true;
    progress.value = 0;
    const r: SampleRequest = {
      labels: req.labels ?? Number(classSel.value),
      steps: req.steps ?? Number(stepsIn.value),
      cfg: req.cfg ?? Number(cfgIn.value),
      seed: req.seed ?? Number(seedIn.value),
    };
    classSel.value = String(typeof r.labels === 'number' ? r.labels : r.labels[0]);
    stepsIn.value = String(r.steps);
    cfgIn.value = String(r.cfg);
    seedIn.value = String(r.seed);
    say(`sampling ${r.steps} grid points, guidance ${r.cfg}, seed ${r.seed}…`);
    try {
      const out = await sampler.sample({ ...r, onProgress: (done, total, phase) => {
        progress.value = done / total;
        const n = total - (sampler.manifest.programs.decode ? 1 : 0);
        say(phase === 'decode' ? 'decoding…' : phase === 'block' ? `flow block ${done} of ${n}` : `step ${done} of ${n}`);
      } });
      progress.value = 1;
      draw(out, sampler);
      api.last = out;
      say(`done in ${(out.ms / 1000).toFixed(2)} s`);
      return out;
    } catch (e) {
      say(`sampling failed: ${(e as Error).message}`, true);
      throw e;
    } finally {
      busy = false;
      button.disabled = false;
    }
  };
  $<HTMLFormElement>('controls').addEventListener('submit', (ev) => {
    ev.preventDefault();
    api.sample().catch(() => undefined);
  });
  const flow = m.sampler.method === 'reverse';
  if (flow) {
    // TarFlow: one reverse pass, no steps to pick; the guidance is a weight (0 = none)
    stepsIn.closest('label')!.hidden = true;
    cfgIn.closest('label')!.firstChild!.textContent = 'guidance weight ';
  }
  for (const el of [classSel, cfgIn, seedIn, button, ...(flow ? [] : [stepsIn])]) el.disabled = false;
  say('ready: pick a class, the steps and the guidance scale, then Sample');
}

api.ready = start().catch((e: unknown) => {
  if (!status.className) say(`could not open the bundle: ${(e as Error).message}`, true);
  throw e;
});
api.ready.catch(() => undefined);
