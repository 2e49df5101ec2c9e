// Preloaded into worker processes by `bench e2e --profile` (NODE_OPTIONS=--import, since Node refuses --cpu-prof
// there): on SIGWINCH (sent when the measured run starts, so start-up is left out) it starts sampling the main
// thread with the inspector's profiler, and writes CPU.<pid>.cpuprofile when the process exits.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.PROPENSITY_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  let started = false;
  process.on('SIGWINCH', () => {
    if (started) return;
    started = true;
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: 1000 });
    session.post('Profiler.start');
  });
  // same-thread inspector sessions answer synchronously, so this completes inside the exit handler
  process.once('exit', () => {
    if (!started) return;
    session.post('Profiler.stop', (err, res) => {
      if (err || !res?.profile) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, `CPU.${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
