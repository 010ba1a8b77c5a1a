// A small driver for Node's ssh2 client, for Ferry's client-matrix tests.
//
//   node ssh2_client.js HOST PORT USER password|key SECRET < script
//
// The script language is the one of gosftp.go (put, get, reput, reget,
// mkdir, ls, rename, rm, rmdir, stat), plus putstream and getstream, which
// go through createWriteStream/createReadStream instead of fastPut/fastGet
// (those keep many out-of-order requests in flight).
'use strict';
const fs = require('fs');
const { Client } = require('ssh2');

const [host, port, user, how, secret] = process.argv.slice(2);
if (!secret || !['password', 'key'].includes(how)) {
  console.error('usage: node ssh2_client.js HOST PORT USER password|key SECRET < script');
  process.exit(2);
}

function die(what, err) {
  console.error(`ssh2: ${what}: ${err && err.message ? err.message : err}`);
  process.exit(1);
}

const call = (fn) => new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));

function pipe(from, to) {
  return new Promise((resolve, reject) => {
    from.on('error', reject);
    to.on('error', reject);
    to.on('close', resolve);
    from.pipe(to);
  });
}

async function run(sftp, f) {
  switch (f[0]) {
    case 'put': return call((cb) => sftp.fastPut(f[1], f[2], cb));
    case 'get': return call((cb) => sftp.fastGet(f[1], f[2], cb));
    case 'putstream': return pipe(fs.createReadStream(f[1]), sftp.createWriteStream(f[2]));
    case 'getstream': return pipe(sftp.createReadStream(f[1]), fs.createWriteStream(f[2]));
    case 'reput': {
      const st = await call((cb) => sftp.stat(f[2], cb));
      return pipe(fs.createReadStream(f[1], { start: st.size }),
        sftp.createWriteStream(f[2], { flags: 'r+', start: st.size }));
    }
    case 'reget': {
      const have = fs.existsSync(f[2]) ? fs.statSync(f[2]).size : 0;
      return pipe(sftp.createReadStream(f[1], { start: have }), fs.createWriteStream(f[2], { flags: 'a' }));
    }
    case 'mkdir': return call((cb) => sftp.mkdir(f[1], cb));
    case 'rename': return call((cb) => sftp.rename(f[1], f[2], cb));
    case 'rm': return call((cb) => sftp.unlink(f[1], cb));
    case 'rmdir': return call((cb) => sftp.rmdir(f[1], cb));
    case 'stat': {
      const st = await call((cb) => sftp.stat(f[1], cb));
      process.stdout.write(`stat\t${st.size}\n`);
      return undefined;
    }
    case 'ls': {
      const list = await call((cb) => sftp.readdir(f[1], cb));
      for (const e of list) {
        const kind = e.attrs.isDirectory() ? 'd' : 'f';
        process.stdout.write(`ls\t${e.filename}\t${e.attrs.size}\t${kind}\n`);
      }
      process.stdout.write('end\n');
      return undefined;
    }
    default: throw new Error(`unknown operation ${f[0]}`);
  }
}

const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.length > 0);
const conn = new Client();
conn.on('error', (err) => die('connection', err));
conn.on('ready', () => {
  conn.sftp(async (err, sftp) => {
    if (err) die('sftp', err);
    for (const line of lines) {
      try {
        await run(sftp, line.split('\t'));
      } catch (e) {
        die(line.replace(/\t/g, ' '), e);
      }
    }
    conn.end();
  });
});
const opts = { host, port: Number(port), username: user, readyTimeout: 20000 };
if (how === 'password') opts.password = secret;
else opts.privateKey = fs.readFileSync(secret);
conn.connect(opts);
