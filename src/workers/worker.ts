// The worker side of several workers: it asks the primary for the configuration, then answers
// the primary's questions (its metrics, whether it can serve) about the coatcheck it runs. The
// channel is the process's IPC channel (cli.ts passes it in).
import type { Coatcheck } from '../app.js';
import type { Config } from '../config/schema.js';
import { isToWorker, type MetricsSnapshot, type ToPrimary } from './messages.js';

export interface PrimaryChannel {
  send(message: ToPrimary): void;
  onMessage(listener: (message: unknown) => void): void;
}

/** The configuration and slot number the primary sends once asked. */
export function receiveConfig(channel: PrimaryChannel): Promise<{ config: Config; slot: number }> {
  return new Promise((resolve) => {
    let received = false;
    channel.onMessage((m) => {
      if (received || !isToWorker(m) || m.cc !== 'config') return;
      received = true;
      resolve({ config: m.config, slot: m.slot });
    });
    channel.send({ cc: 'hello' });
  });
}

/** Answers the primary's questions about `app` from now on, and runs the configurations it sends on reload. */
export function answerPrimary(channel: PrimaryChannel, app: Coatcheck, reloadFailed: (err: Error) => void): void {
  channel.onMessage((m) => {
    if (!isToWorker(m)) return;
    if (m.cc === 'reload') {
      app.reload(m.config).catch((err: unknown) => reloadFailed(err as Error));
      return;
    }
    if (m.cc !== 'ask') return;
    const { id } = m;
    const answered =
      m.what === 'metrics'
        ? app.metrics.registry.getMetricsAsJSON().then((metrics) => ({ cc: 'answer' as const, id, metrics: metrics as unknown as MetricsSnapshot }))
        : app.readiness().then((readiness) => ({ cc: 'answer' as const, id, readiness }));
    answered.then(
      (answer) => channel.send(answer),
      (err: unknown) => channel.send({ cc: 'answer', id, error: (err as Error).message }),
    );
  });
}
