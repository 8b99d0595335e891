// Reads a V8 .cpuprofile (node --cpu-prof) and lists where the time went: the top functions by
// self time, and self time by area (coatcheck's own code, each dependency, node internals, GC).
interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function shortUrl(url: string, root: string): string {
  let u = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
  if (u.startsWith(root)) u = u.slice(root.length);
  return u;
}

function areaOf(frame: CallFrame, root: string): string {
  const u = shortUrl(frame.url, root);
  if (u === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native / V8 builtins)';
  if (u.startsWith('node:')) return 'node internals';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (m) return m[1] as string;
  if (u.startsWith('dist/')) return `coatcheck ${u.split('/').slice(1, -1).join('/') || u.split('/')[1]}`;
  return u;
}

export function profileSummary(json: string, root: string, top: number): string {
  const p = JSON.parse(json) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const fns = new Map<string, number>();
  const areas = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const f = n.callFrame;
    const where = shortUrl(f.url, root);
    const key = `${f.functionName || '(anonymous)'}${where ? `  ${where}:${f.lineNumber + 1}` : ''}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const a = areaOf(f, root);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  // Self time charged to the nearest coatcheck function up the stack (dist/…): where the time
  // spent in node internals, V8 builtins and dependencies was asked for.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const own = new Map<string, number>();
  for (const [id, us] of self) {
    let cur: number | undefined = id;
    let key = '(no coatcheck frame on the stack)';
    while (cur !== undefined) {
      const n = byId.get(cur);
      if (!n) break;
      const where = shortUrl(n.callFrame.url, root);
      if (where.startsWith('dist/')) {
        key = `${n.callFrame.functionName || '(anonymous)'}  ${where}:${n.callFrame.lineNumber + 1}`;
        break;
      }
      cur = parent.get(cur);
    }
    own.set(key, (own.get(key) ?? 0) + us);
  }
  const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
  const busy = total - (areas.get('(idle)') ?? 0);
  const lines = [`profile: ${(total / 1e6).toFixed(1)} s sampled, ${((busy / total) * 100).toFixed(0)}% busy`, '', 'self time by area:'];
  for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, 20)) lines.push(`  ${pct(us)}  ${a}`);
  lines.push('', `top ${top} functions by self time:`);
  for (const [k, us] of [...fns].sort((x, y) => y[1] - x[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`);
  lines.push('', 'time charged to the nearest coatcheck function on the stack (its own work and what it called):');
  for (const [k, us] of [...own].sort((x, y) => y[1] - x[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`);
  return `${lines.join('\n')}\n`;
}
