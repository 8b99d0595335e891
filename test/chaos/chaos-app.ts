// The app of the chaos run (chaos.ts), as a process of its own so that it can be killed
// mid-response and started again on the same port. It tells its parent, over IPC and before it
// answers, every request it receives: the chaos request id and the Cookie header, which is the
// "app's request log" the invariants are checked against.
//
//   POST /login?user=U&n=N   sets app_session=U-N (the session's identity, as the app sees it)
//   GET  /page               answers with the Cookie header it got
//   POST /update?v=K         sets counter=K (a cookie update), answers with the Cookie header
//   GET  /logout             clears app_session and counter
//   GET  /slow               answers after CHAOS_SLOW_MS (past coatcheck's upstreamTimeout)
//   GET  /stream             a response that trickles for a while (killed mid-response)
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AppSeen {
  seq: string | undefined;
  path: string;
  cookie: string | undefined;
}

const slowMs = Number(process.env.CHAOS_SLOW_MS ?? '3000');
const port = Number(process.env.CHAOS_APP_PORT ?? '0');

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://app');
  const seq = req.headers['x-chaos-seq'];
  const seen: AppSeen = { seq: typeof seq === 'string' ? seq : undefined, path: url.pathname, cookie: req.headers.cookie };
  process.send?.({ seen });
  req.resume();
  const json = (status: number, body: unknown, setCookie: string[] = []) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(setCookie.length > 0 ? { 'set-cookie': setCookie } : {}) });
    res.end(text);
  };
  switch (url.pathname) {
    case '/login':
      return json(200, { ok: true }, [`app_session=${url.searchParams.get('user')}-${url.searchParams.get('n')}; Path=/; HttpOnly`]);
    case '/update':
      return json(200, { cookie: req.headers.cookie ?? '' }, [`counter=${url.searchParams.get('v')}; Path=/`]);
    case '/logout':
      return json(200, { ok: true }, ['app_session=; Path=/; Max-Age=0', 'counter=; Path=/; Max-Age=0']);
    case '/slow': {
      const timer = setTimeout(() => json(200, { late: true }), slowMs);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    case '/stream': {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`chunk ${n}\n`);
        if (++n === 20) {
          clearInterval(timer);
          res.end();
        }
      }, 25);
      res.on('close', () => clearInterval(timer));
      return;
    }
    default:
      return json(200, { cookie: req.headers.cookie ?? '' });
  }
});
server.keepAliveTimeout = 1000;
server.listen(port, '127.0.0.1', () => process.send?.({ listening: (server.address() as AddressInfo).port }));
