import t from 'tap';
import { RemoteSyntaxError } from '../../src/ovsdb/errors.js';
import { formatRemote, parseRemote, parseRemotes, type Remote } from '../../src/ovsdb/remote.js';

const VALID: [string, Remote][] = [
  ['unix:/var/run/ovn/ovnnb_db.sock', { kind: 'unix', path: '/var/run/ovn/ovnnb_db.sock' }],
  ['unix:relative/db.sock', { kind: 'unix', path: 'relative/db.sock' }],
  ['unix:/tmp/with:colon.sock', { kind: 'unix', path: '/tmp/with:colon.sock' }],
  ['tcp:127.0.0.1:6641', { kind: 'tcp', host: '127.0.0.1', port: 6641 }],
  ['tcp:ovn-central.example.com:6641', { kind: 'tcp', host: 'ovn-central.example.com', port: 6641 }],
  ['tcp:localhost:1', { kind: 'tcp', host: 'localhost', port: 1 }],
  ['ssl:10.0.0.2:65535', { kind: 'ssl', host: '10.0.0.2', port: 65535 }],
  ['tcp:[::1]:6641', { kind: 'tcp', host: '::1', port: 6641 }],
  ['ssl:[fd00:10::2]:6642', { kind: 'ssl', host: 'fd00:10::2', port: 6642 }],
  ['tcp:[::ffff:192.0.2.1]:6640', { kind: 'tcp', host: '::ffff:192.0.2.1', port: 6640 }],
  ['  tcp:127.0.0.1:6641\t', { kind: 'tcp', host: '127.0.0.1', port: 6641 }],
];

const INVALID: [string, string, RegExp][] = [
  ['empty', '', /empty remote/],
  ['blank', '   ', /empty remote/],
  ['no scheme', '/var/run/ovn/ovnnb_db.sock', /expected METHOD:ARGS/],
  ['leading colon', ':6641', /expected METHOD:ARGS/],
  ['unknown scheme', 'http:127.0.0.1:6641', /unknown connection method "http"/],
  ['scheme is case-sensitive', 'TCP:127.0.0.1:6641', /unknown connection method "TCP"/],
  ['passive unix', 'punix:/var/run/ovn/ovnnb_db.sock', /passive.*only ovsdb-server.*"unix:"/],
  ['passive tcp', 'ptcp:6641:127.0.0.1', /passive.*only ovsdb-server.*"tcp:"/],
  ['passive ssl', 'pssl:6641', /passive.*only ovsdb-server.*"ssl:"/],
  ['empty unix path', 'unix:', /needs a socket path/],
  ['tcp without port', 'tcp:127.0.0.1', /needs HOST:PORT/],
  ['tcp empty port', 'tcp:127.0.0.1:', /missing port/],
  ['tcp missing host', 'tcp::6641', /missing host/],
  ['tcp only scheme', 'tcp:', /needs HOST:PORT/],
  ['port zero', 'tcp:127.0.0.1:0', /out of range/],
  ['port too big', 'tcp:127.0.0.1:65536', /out of range/],
  ['port huge', 'ssl:127.0.0.1:99999999999999999999', /out of range/],
  ['port negative', 'tcp:127.0.0.1:-1', /not a number/],
  ['port hex', 'tcp:127.0.0.1:0x1f', /not a number/],
  ['port exponent', 'tcp:127.0.0.1:1e3', /not a number/],
  ['port with space', 'tcp:127.0.0.1: 6641', /not a number/],
  ['port name', 'tcp:127.0.0.1:ovsdb', /not a number/],
  ['host with space', 'tcp:bad host:6641', /not a valid host/],
  ['host with slash', 'tcp:a/b:6641', /not a valid host/],
  ['unbracketed IPv6', 'tcp:::1:6641', /must be in brackets/],
  ['unbracketed IPv6 full', 'tcp:fd00::2:6641', /must be in brackets.*\[fd00::2\]:6641/],
  ['unclosed bracket', 'tcp:[::1:6641', /missing "\]"/],
  ['bracketed non-IPv6', 'tcp:[127.0.0.1]:6641', /not an IPv6 address/],
  ['bracketed without port', 'tcp:[::1]', /needs a port/],
  ['junk after bracket', 'tcp:[::1]x:6641', /unexpected "x:6641"/],
  ['bracketed empty port', 'ssl:[::1]:', /missing port/],
  ['list given to parseRemote', 'tcp:a:1,tcp:b:2', /list of remotes; use parseRemotes/],
];

t.test('valid remotes', async (t) => {
  for (const [spec, expected] of VALID) {
    t.strictSame(parseRemote(spec), expected, spec);
    t.strictSame(parseRemotes(spec), [expected], `${spec} as a list of one`);
  }
});

t.test('invalid remotes', async (t) => {
  for (const [name, spec, message] of INVALID) {
    t.throws(() => parseRemote(spec), RemoteSyntaxError, name);
    try {
      parseRemote(spec);
    } catch (err) {
      t.ok(err instanceof RemoteSyntaxError, `${name}: error type`);
      t.match((err as RemoteSyntaxError).message, message, `${name}: message`);
      t.match((err as RemoteSyntaxError).message, /^invalid OVSDB remote "/, `${name}: names the remote`);
    }
    if (!spec.includes(',')) {
      t.throws(() => parseRemotes(spec), RemoteSyntaxError, `${name} (in parseRemotes)`);
    }
  }
});

t.test('clustered lists', async (t) => {
  t.strictSame(parseRemotes('tcp:10.0.0.1:6641,tcp:10.0.0.2:6641,tcp:10.0.0.3:6641'), [
    { kind: 'tcp', host: '10.0.0.1', port: 6641 },
    { kind: 'tcp', host: '10.0.0.2', port: 6641 },
    { kind: 'tcp', host: '10.0.0.3', port: 6641 },
  ]);
  t.strictSame(parseRemotes(' ssl:[fd00::1]:6641 , ssl:[fd00::2]:6641\n, unix:/run/ovn/nb.sock '), [
    { kind: 'ssl', host: 'fd00::1', port: 6641 },
    { kind: 'ssl', host: 'fd00::2', port: 6641 },
    { kind: 'unix', path: '/run/ovn/nb.sock' },
  ], 'whitespace around entries and mixed kinds');

  const bad: [string, string, RegExp][] = [
    ['trailing comma', 'tcp:a:1,', /entry 2 of 2 is empty/],
    ['leading comma', ',tcp:a:1', /entry 1 of 2 is empty/],
    ['double comma', 'tcp:a:1,,tcp:b:2', /entry 2 of 3 is empty/],
    ['blank entry', 'tcp:a:1, ,tcp:b:2', /entry 2 of 3 is empty/],
    ['only commas', ',', /entry 1 of 2 is empty/],
    ['one bad member', 'tcp:a:1,tcp:b', /"tcp:b".*needs HOST:PORT/],
    ['passive member', 'tcp:a:1,ptcp:6641', /"ptcp:6641".*passive/],
  ];
  for (const [name, spec, message] of bad) {
    t.throws(() => parseRemotes(spec), RemoteSyntaxError, name);
    t.throws(() => parseRemotes(spec), { message }, `${name}: message`);
  }
});

t.test('error carries the offending remote', async (t) => {
  try {
    parseRemotes('tcp:a:1, tcp:b:0 ');
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof RemoteSyntaxError);
    t.equal((err as RemoteSyntaxError).remote, 'tcp:b:0');
  }
});

t.test('formatRemote', async (t) => {
  const cases: [Remote, string][] = [
    [{ kind: 'unix', path: '/var/run/ovn/ovnnb_db.sock' }, 'unix:/var/run/ovn/ovnnb_db.sock'],
    [{ kind: 'tcp', host: '127.0.0.1', port: 6641 }, 'tcp:127.0.0.1:6641'],
    [{ kind: 'ssl', host: 'nb.example.com', port: 6641 }, 'ssl:nb.example.com:6641'],
    [{ kind: 'tcp', host: '::1', port: 6641 }, 'tcp:[::1]:6641'],
    [{ kind: 'ssl', host: 'fd00:10::2', port: 6642 }, 'ssl:[fd00:10::2]:6642'],
  ];
  for (const [remote, text] of cases) {
    t.equal(formatRemote(remote), text, text);
    t.strictSame(parseRemote(formatRemote(remote)), remote, `${text} round trip`);
  }
});

t.test('round trip of every valid remote', async (t) => {
  for (const [spec, expected] of VALID) {
    const formatted = formatRemote(parseRemote(spec));
    t.equal(formatted, spec.trim(), `${spec.trim()} formats back to itself`);
    t.strictSame(parseRemote(formatted), expected);
  }
  const list = 'tcp:10.0.0.1:6641,ssl:[::1]:6642,unix:/run/ovn/nb.sock';
  t.equal(parseRemotes(list).map(formatRemote).join(','), list, 'list round trip');
});
