/**
 * @file Training progress on the console: on a terminal, one line redrawn in place (a bar, step,
 * rate, loss, data vs step time, ETA); otherwise a plain line every `every` steps (logs, CI).
 */
export interface ProgressUpdate {
  step: number;
  total: number;
  loss: number;
  /** Milliseconds of the last step spent waiting for data, and running the step. */
  dataMs: number;
  stepMs: number;
  extra?: string;
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Progress {
  private readonly started = performance.now();
  private readonly startStep: number;
  private dataSum = 0;
  private stepSum = 0;
  private n = 0;
  private drawn = false;

  constructor(
    startStep: number,
    private readonly o: { tty: boolean; every: number; write: (s: string) => void; log: (line: string) => void },
  ) {
    this.startStep = startStep;
  }

  /** Mean data-wait and step milliseconds so far. */
  get means(): { dataMs: number; stepMs: number } {
    return { dataMs: this.n ? this.dataSum / this.n : 0, stepMs: this.n ? this.stepSum / this.n : 0 };
  }

  update(u: ProgressUpdate): void {
    this.dataSum += u.dataMs;
    this.stepSum += u.stepMs;
    this.n++;
    const secs = (performance.now() - this.started) / 1000;
    const done = u.step - this.startStep;
    const rate = done / Math.max(secs, 1e-9);
    const eta = (u.total - u.step) / rate;
    const { dataMs, stepMs } = this.means;
    const stats = `step ${u.step}/${u.total}  loss ${u.loss.toFixed(4)}  ${rate.toFixed(1)} step/s  data ${dataMs.toFixed(1)} ms / step ${stepMs.toFixed(1)} ms  ETA ${duration(eta)}${u.extra ? `  ${u.extra}` : ''}`;
    if (this.o.tty) {
      const width = 24, fill = Math.round((width * u.step) / Math.max(1, u.total));
      this.o.write(`\r[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${stats}\x1b[K`);
      this.drawn = true;
      if (u.step === u.total) this.finish();
    } else if (u.step % this.o.every === 0 || u.step === u.total) this.o.log(stats);
  }

  /** Print a line without breaking the bar. */
  log(line: string): void {
    if (this.drawn) this.o.write('\n');
    this.drawn = false;
    this.o.log(line);
  }

  finish(): void {
    if (this.drawn) this.o.write('\n');
    this.drawn = false;
  }
}
