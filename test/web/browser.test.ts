/**
 * Kiln in the browser, end to end. A tiny LightningDiT + FAE decoders (test/web/tinyBundle.ts) is
 * exported with `kiln export --target web`, sampled by `kiln sample --backend wgsl` in Node (the
 * reference), then
 *  1. by the browser runtime (web/runtime) in Node on Dawn: the same WGSL on the same device kind, so the
 *     latents and images must be bit-identical to the Node sampler's (same noise, same Euler/CFG loop,
 *     same programs, same kernel variant);
 *  2. by the page in real headless Chromium (Debian's, SwiftShader WebGPU), served by `kiln serve`'s
 *     server: its images must match the Node wgsl backend's within 1e-4 absolute (values are O(1)),
 *     and the canvas pixels within 1 level of 255. Why not bit-identical: Chromium's Dawn/Tint is
 *     another build than the npm package's, and may translate the same f32 WGSL expressions to SPIR-V
 *     differently (e.g. fused multiply-adds), a few ulp per operation; over the 2 Euler steps and the
 *     decoders of this model that stays far below 1e-4 (measured: the max difference is printed), while
 *     any real divergence (wrong noise, guidance, step, latent stats or decoder) moves values by > 0.01.
 *     The test saves a screenshot (out/web-test/page.png, gitignored) and fails on any console error
 *     or page error. It also checks the message of a browser without WebGPU.
 * A tiny class-conditional TarFlow on the same latents goes the same way (guidance weight 1.5: the
 * guided KV-cached block programs, whose caches are `next.` updates inside the plans), bit-identical on
 * Dawn and within the same tolerance in Chromium (its bundle reuses the DiT bundle's page: the page is
 * the same for every bundle).
 * Needs /usr/bin/chromium (Debian package chromium; .ci/run installs it).
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAWN_TOGGLES } from '../../backends/wgsl/device.ts';
import { main } from '../../cli/main.ts';
import { serveBundle } from '../../cli/web/serveBundle.ts';
import type { HostTensor } from '../../ir/tensor.ts';
import { loadSafetensors } from '../../runtime/safetensors.ts';
import { KilnWebSampler, imageRgba } from '../../web/runtime/sampler.ts';
import { REPO } from '../support/kilnCli.ts';
import { writeTinyGenerator, writeTinyTarFlow } from './tinyBundle.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader', '--headless=new', '--no-sandbox'];
const ARTIFACTS = join(REPO, 'out', 'web-test');
/** The request both sides sample: class 1 for every sample, 3 grid points (2 Euler steps), guidance 2, seed 5. */
const REQUEST = { labels: 1, steps: 3, cfg: 2, seed: 5 } as const;
const BATCH = 4;

const dir = mkdtempSync(join(tmpdir(), 'kiln-web-'));
const bundle = join(dir, 'bundle');
const flowBundle = join(dir, 'flow-bundle');
type Samples = { samples: HostTensor; images: HostTensor };
let reference: Samples;
let flowReference: Samples;
/** The TarFlow request: class 2, guidance weight 1.5, seed 7. */
const FLOW_REQUEST = { labels: 2, steps: 2, cfg: 1.5, seed: 7 } as const;

/** One Dawn instance for the runtime tests of this file (besides the Node backend's own). */
let gpu: GPU | undefined;
async function dawn(): Promise<GPU> {
  if (!gpu) {
    const { create, globals } = (await import('webgpu')) as unknown as { create(flags: string[]): GPU; globals: object };
    Object.assign(globalThis, globals);
    gpu = create(DAWN_TOGGLES);
  }
  return gpu;
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
};

beforeAll(async () => {
  const t = writeTinyGenerator(dir);
  const common = ['--model', t.spec, '--fae', t.fae, '--latent-stats', t.stats];
  expect(await main(['export', t.dit, '--target', 'web', '--out', bundle, ...common, '--batch', String(BATCH), '--steps', '3', '--cfg', '2', '--seed', '5'])).toBe(0);
  const saved = join(dir, 'node.safetensors');
  expect(await main(['sample', t.dit, ...common, '--backend', 'wgsl', '--num', String(BATCH), '--classes', '1', '--steps', '3', '--shift', '0.4', '--cfg', '2', '--seed', '5', '--out', join(dir, 'node.png'), '--save-samples', saved])).toBe(0);
  const s = loadSafetensors(saved).tensors;
  reference = { samples: s.get('samples')!, images: s.get('images')! };
  const f = writeTinyTarFlow(dir);
  const flowCommon = ['--model', f.spec, '--fae', t.fae, '--latent-stats', t.stats];
  expect(await main(['export', f.file, '--target', 'web', '--out', flowBundle, ...flowCommon, '--batch', String(BATCH), '--cfg', '1.5', '--seed', '7'])).toBe(0);
  const flowSaved = join(dir, 'flow.safetensors');
  expect(await main(['sample', f.file, ...flowCommon, '--backend', 'wgsl', '--num', String(BATCH), '--classes', '2', '--cfg', '1.5', '--seed', '7', '--out', join(dir, 'flow.png'), '--save-samples', flowSaved])).toBe(0);
  const fs = loadSafetensors(flowSaved).tensors;
  flowReference = { samples: fs.get('samples')!, images: fs.get('images')! };
  for (const f of ['index.html', 'assets', 'runtime']) cpSync(join(bundle, f), join(flowBundle, f), { recursive: true });
  // a live model: the images vary (a constant image would hide most mistakes)
  const v = Array.from(reference.images.data);
  expect(Math.max(...v) - Math.min(...v)).toBeGreaterThan(0.5);
}, 120_000);

describe('the browser runtime in Node (Dawn)', () => {
  it('samples exactly what kiln sample --backend wgsl samples (same seed, steps, guidance)', async () => {
    const load = async (p: string) => {
      const b = readFileSync(join(bundle, p));
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    };
    const sampler = await KilnWebSampler.open('file:///unused/', { gpu: await dawn(), load });
    try {
      expect(sampler.variant).toBe('swiftshader'); // the variant WgslExecutable's defaultKernels picks on SwiftShader
      const progress: string[] = [];
      const r = await sampler.sample({ ...REQUEST, onProgress: (d, n, p) => progress.push(`${p} ${d}/${n}`) });
      expect(progress).toEqual(['step 1/3', 'step 2/3', 'decode 3/3']);
      expect(r.labels).toEqual([1, 1, 1, 1]);
      expect(r.images.shape).toEqual(reference.images.shape);
      expect(maxDiff(r.latents.data, reference.samples.data)).toBe(0);
      expect(maxDiff(r.images.data, reference.images.data)).toBe(0);
      // another guidance scale gives other images (the guided program is used)
      const other = await sampler.sample({ ...REQUEST, cfg: 3 });
      expect(maxDiff(other.images.data, reference.images.data)).toBeGreaterThan(1e-3);
    } finally {
      sampler.dispose();
    }
  }, 60_000);
});

describe('the browser runtime in Node (Dawn): TarFlow', () => {
  it('samples exactly what kiln sample --backend wgsl samples (guided reverse pass, KV caches)', async () => {
    const load = async (p: string) => {
      const b = readFileSync(join(flowBundle, p));
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    };
    const sampler = await KilnWebSampler.open('file:///unused/', { gpu: await dawn(), load });
    try {
      const progress: string[] = [];
      const r = await sampler.sample({ ...FLOW_REQUEST, onProgress: (d, n, p) => progress.push(`${p} ${d}/${n}`) });
      expect(progress).toEqual(['block 1/3', 'block 2/3', 'decode 3/3']);
      expect(maxDiff(r.latents.data, flowReference.samples.data)).toBe(0);
      expect(maxDiff(r.images.data, flowReference.images.data)).toBe(0);
    } finally {
      sampler.dispose();
    }
  }, 60_000);
});

describe('the page in headless Chromium (SwiftShader WebGPU)', () => {
  let server: Awaited<ReturnType<typeof serveBundle>>;
  let url: string;
  let flowUrl: string;
  let flowServer: Awaited<ReturnType<typeof serveBundle>>;
  let browser: import('playwright-core').Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser test needs Debian's chromium (sudo apt-get install chromium; .ci/run installs it)`);
    server = await serveBundle(bundle, 0);
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    flowServer = await serveBundle(flowBundle, 0);
    flowUrl = `http://127.0.0.1:${(flowServer.address() as AddressInfo).port}/`;
    const { chromium } = await import('playwright-core');
    // XDG_RUNTIME_DIR: Chromium complains on stderr without one (CI containers have none).
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, headless: true, env: { ...process.env, XDG_RUNTIME_DIR: mkdtempSync(join(tmpdir(), 'kiln-xdg-')) } });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    server?.close();
    flowServer?.close();
  });

  async function openPage(init?: string, at = url) {
    const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(`console.error: ${m.text()}`));
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    if (init) await page.addInitScript(init);
    await page.goto(at);
    return { page, errors };
  }

  it('samples the bundle on navigator.gpu and matches the Node wgsl backend (images within 1e-4, pixels within 1/255)', async () => {
    const { page, errors } = await openPage();
    try {
      await page.evaluate('window.kiln.ready');
      expect(await page.textContent('#model')).toMatch(/swiftshader/i);
      // the user's path: pick the controls, press Sample, wait for the progress bar and the images
      await page.selectOption('#class', String(REQUEST.labels));
      await page.fill('#steps', String(REQUEST.steps));
      await page.fill('#cfg', String(REQUEST.cfg));
      await page.fill('#seed', String(REQUEST.seed));
      await page.click('#sample');
      await page.waitForFunction("document.querySelector('#status').textContent.startsWith('done')", undefined, { timeout: 30_000 });
      expect(await page.evaluate("document.querySelector('#progress').value")).toBe(1);
      // (in-page code as strings: the test's tsconfig has no DOM types)
      const got = (await page.evaluate(`(() => {
        const k = window.kiln.last;
        const canvases = [...document.querySelectorAll('#images canvas')];
        return {
          images: Array.from(k.images.data), shape: k.images.shape, labels: k.labels,
          pixels: canvases.map((c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)),
          captions: [...document.querySelectorAll('#images figcaption')].map((f) => f.textContent),
        };
      })()`)) as { images: number[]; shape: number[]; labels: number[]; pixels: number[][]; captions: string[] };
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'page.png'), fullPage: true });
      expect(got.labels).toEqual([1, 1, 1, 1]);
      expect(got.captions).toEqual(['1', '1', '1', '1']);
      expect(got.shape).toEqual([...reference.images.shape]);
      const d = maxDiff(got.images, reference.images.data);
      console.log(`browser vs node wgsl: max |Δimage| = ${d.toExponential(2)} (tolerance 1e-4); screenshot ${join(ARTIFACTS, 'page.png')}`);
      expect(d).toBeLessThanOrEqual(1e-4);
      expect(got.pixels).toHaveLength(BATCH);
      got.pixels.forEach((px, b) => expect(maxDiff(px, imageRgba(reference.images, b, [-1, 1]))).toBeLessThanOrEqual(1));
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('samples a TarFlow bundle (guidance weight, no steps control) and matches the Node wgsl backend', async () => {
    const { page, errors } = await openPage(undefined, flowUrl);
    try {
      await page.evaluate('window.kiln.ready');
      expect(await page.isHidden('#steps')).toBe(true);
      const got = (await page.evaluate(`window.kiln.sample(${JSON.stringify(FLOW_REQUEST)}).then((r) => ({ images: Array.from(r.images.data), labels: r.labels }))`)) as { images: number[]; labels: number[] };
      await page.screenshot({ path: join(ARTIFACTS, 'page-tarflow.png'), fullPage: true });
      expect(got.labels).toEqual([2, 2, 2, 2]);
      const d = maxDiff(got.images, flowReference.images.data);
      console.log(`browser vs node wgsl (TarFlow): max |Δimage| = ${d.toExponential(2)} (tolerance 1e-4)`);
      expect(d).toBeLessThanOrEqual(1e-4);
      expect(await page.textContent('#status')).toMatch(/^done/);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('says plainly that WebGPU is missing where navigator.gpu is absent', async () => {
    const { page, errors } = await openPage("Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined })");
    try {
      await page.waitForFunction("document.querySelector('#status').className === 'error'", undefined, { timeout: 10_000 });
      expect(await page.textContent('#status')).toMatch(/WebGPU is not available in this browser/);
      expect(await page.isDisabled('#sample')).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 30_000);
});
