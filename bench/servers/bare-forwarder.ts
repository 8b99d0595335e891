// The bare forwarder: a minimal Node reverse proxy with no session logic, on the same
// forwarding library as coatcheck (an undici Pool, request(), raw headers). What a user would
// write in ten minutes instead of deploying coatcheck.
//   node bare-forwarder.js <upstream origin>
import { pipeline } from 'node:stream';
import { badGateway, createPool, createServer, hasBody, HOP_BY_HOP, requestHeaders, serve } from './forward.js';

const origin = process.argv[2];
if (!origin) throw new Error('usage: bare-forwarder.js <upstream origin>');
const pool = createPool(origin);

const server = createServer((req, res) => {
  pool
    .request({
      method: (req.method ?? 'GET') as 'GET',
      path: req.url ?? '/',
      headers: requestHeaders(req),
      body: hasBody(req) ? req : null,
      responseHeaders: 'raw',
    })
    .then(
      (r) => {
        const raw = r.headers as unknown as string[];
        const out: string[] = [];
        for (let i = 0; i < raw.length; i += 2) {
          if (!HOP_BY_HOP.has((raw[i] as string).toLowerCase())) out.push(raw[i] as string, raw[i + 1] as string);
        }
        res.writeHead(r.statusCode, out);
        pipeline(r.body, res, () => undefined);
      },
      () => badGateway(res),
    );
});

serve(server, () => pool.close());
