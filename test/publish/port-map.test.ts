/**
 * The engine's port map (com.docker.network.portmap) as measured from
 * engines 20.10 and 26.1: numbers for protocols, "" for every address,
 * HostPort 0 for -P, a range for `-p 9100-9105:80`; anything else refused.
 */
import t from 'tap';
import { DomainError } from '../../src/errors.js';
import { describe, NO_PROXY_6TO4_OPTION, PORT_MAP_OPTION, portRequests, requestKey } from '../../src/publish/port-map.js';

const map = (...entries: unknown[]) => ({ [PORT_MAP_OPTION]: entries, 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }] });

t.test('IPv6 host addresses in their one spelling; with 28+ no_proxy_6to4, the IPv4 side only', async (t) => {
  const at = (HostIP: string, HostPort = 8080) => ({ Proto: 6, IP: '', Port: 80, HostIP, HostPort, HostPortEnd: HostPort });
  t.same(portRequests(map(at('::0'), at('2001:DB8:0:0::1', 8081), at('0.0.0.0', 8082))).map((r) => r.hostIp), ['::', '2001:db8::1', '0.0.0.0'], 'compressed, lower case; 0.0.0.0 kept apart from ""');
  const both = { ...map(at(''), at('::1', 8081), at('127.0.0.1', 8082)), [NO_PROXY_6TO4_OPTION]: true };
  t.same(portRequests(both).map((r) => `${r.hostIp}:${r.hostPort}`), ['0.0.0.0:8080', '127.0.0.1:8082'], 'every address becomes every IPv4 one; IPv6 ones are left to the IPv6 gateway');
  t.same(portRequests({ ...both, [NO_PROXY_6TO4_OPTION]: false }).map((r) => r.hostIp), ['', '::1', '127.0.0.1'], 'false: all of them');
});

t.test('what the engines send', async (t) => {
  t.same(portRequests(map({ Proto: 6, IP: '', Port: 80, HostIP: '127.0.0.1', HostPort: 8080, HostPortEnd: 8080 })), [
    { protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 8080, hostPortEnd: 8080, containerPort: 80 },
  ]);
  const [udp, sctp, range, ephemeral] = portRequests(
    map(
      { Proto: 17, IP: '', Port: 80, HostIP: '', HostPort: 8081, HostPortEnd: 8081 },
      { Proto: 132, IP: '', Port: 80, HostIP: '', HostPort: 8082, HostPortEnd: 8082 },
      { Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 9100, HostPortEnd: 9105 },
      { Proto: 6, IP: '', Port: 81, HostIP: '', HostPort: 0, HostPortEnd: 0 },
    ),
  );
  t.equal(udp!.protocol, 'udp');
  t.equal(sctp!.protocol, 'sctp');
  t.same([range!.hostPort, range!.hostPortEnd], [9100, 9105], 'a host range');
  t.same([ephemeral!.hostPort, ephemeral!.hostPortEnd], [0, 0], '-P');
  t.equal(describe(range!), '9100-9105->80/tcp');
  t.equal(describe(ephemeral!), 'any port->81/tcp');
  t.same(portRequests({}), [], 'no port map');
  t.same(portRequests(null), []);
  t.same(portRequests({ [PORT_MAP_OPTION]: null }), []);
  t.same(portRequests(map({ Proto: 6, Port: 80, HostIP: '::FFFF:10.0.0.1', HostPort: 1, HostPortEnd: 1 }))[0]!.hostIp, '10.0.0.1', 'IPv4-mapped written as IPv4');
  t.equal(
    requestKey(portRequests(map({ Proto: 6, Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }))[0]!),
    requestKey(portRequests(map({ Proto: 6, Port: 80, HostIP: '', HostPort: 8080 }))[0]!),
    'HostPortEnd left out means the one port',
  );
});

t.test('anything else is refused, naming the entry', async (t) => {
  const cases: [unknown, RegExp][] = [
    ['8080:80', /must be a list/],
    [[{ Proto: 1, Port: 80, HostPort: 1 }], /\[0\]\.Proto 1 is not tcp/],
    [[{ Proto: 'tcp', Port: 80 }], /Proto "tcp"/],
    [[{ Proto: 6, Port: 0, HostPort: 1 }], /\[0\]\.Port 0 is not a port/],
    [[{ Proto: 6, Port: 80, HostPort: 70000 }], /HostPort 70000/],
    [[{ Proto: 6, Port: 80, HostPort: 9000, HostPortEnd: 8000 }], /9000-8000 are not a range/],
    [[{ Proto: 6, Port: 80, HostIP: 'localhost', HostPort: 1 }], /HostIP "localhost" is not an IP address/],
    [[{ Proto: 6, Port: 80, HostIP: '', HostPort: 1 }, { Proto: 6, Port: 80, HostIP: '', HostPort: 1 }], /lists 1->80\/tcp twice/],
    [[null], /\[0\] must be an object/],
  ];
  for (const [value, pattern] of cases) {
    t.throws(() => portRequests({ [PORT_MAP_OPTION]: value }), pattern, JSON.stringify(value));
    try {
      portRequests({ [PORT_MAP_OPTION]: value });
    } catch (err) {
      t.ok(err instanceof DomainError && err.code === 'invalid', 'as invalid input');
    }
  }
});
