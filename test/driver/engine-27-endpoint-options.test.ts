/**
 * CreateEndpoint and Join Options of engines 27 to 29: endpoint driver
 * options such as com.docker.network.endpoint.sysctls (27.0; the engine
 * applies them itself inside the container) and .ifname (28.0) are taken
 * and ignored; the port is made as without them. Real driver on a bare NB
 * (engine-fixture.ts), bodies as the engine sends them.
 */
import t from 'tap';
import { hex, useEngineFixture } from './engine-fixture.js';
import { select, wireMap, wireSet } from '../ovn/nb-reads.js';

const engine = await useEngineFixture(t);
const { post, calls } = engine;
const nb = engine.nb.nb;

const networkId = hex(32);
t.before(async () => {
  const reply = await post('NetworkDriver.CreateNetwork', {
    NetworkID: networkId,
    Options: { 'com.docker.network.enable_ipv4': true, 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.47.0.0/24', Gateway: '10.47.0.1/24' }],
    IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: 'fd47::/64', Gateway: 'fd47::1/64' }],
  });
  if (reply.status !== 200) throw new Error(JSON.stringify(reply.body));
});

async function port(name: string) {
  const [row] = await select(nb, 'Logical_Switch_Port', [['name', '==', name]], ['addresses', 'port_security', 'external_ids', 'options']);
  return row && { addresses: wireSet(row.addresses), port_security: wireSet(row.port_security), ids: wireMap(row.external_ids), options: wireMap(row.options) };
}

t.test('com.docker.network.endpoint.sysctls (27+) and other endpoint options: accepted, ignored, nothing of them in NB', async (t) => {
  const cases: [string, Record<string, unknown>][] = [
    // docker run --network name=net,driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.forwarding=1,...
    ['sysctls', { 'com.docker.network.endpoint.sysctls': 'net.ipv4.conf.IFNAME.forwarding=1,net.ipv6.conf.IFNAME.accept_ra=2' }],
    ['one sysctl, and the sandbox keys of a container publishing nothing', {
      'com.docker.network.endpoint.sysctls': 'net.ipv4.conf.IFNAME.log_martians=1',
      'com.docker.network.endpoint.exposedports': [],
      'com.docker.network.portmap': [],
    }],
    ['28: ifname, --mac-address as base64, --dns, published ports, a driver option', {
      'com.docker.network.endpoint.sysctls': 'net.ipv6.conf.IFNAME.disable_ipv6=0',
      'com.docker.network.endpoint.ifname': 'data0',
      'com.docker.network.endpoint.macaddress': 'AkKsEQAF',
      'com.docker.network.endpoint.dnsservers': ['10.47.0.1', '8.8.8.8'],
      'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }],
      'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080 }],
      'com.example.driver-opt': 'x',
    }],
    ['a sysctl string the engine would refuse, and keys no engine sends yet', {
      'com.docker.network.endpoint.sysctls': 'not a sysctl',
      'com.docker.network.endpoint.some_future_option': { nested: [true, null, { a: 1 }] },
    }],
  ];
  for (const [i, [what, options]] of cases.entries()) {
    const id = hex(32);
    const n = i + 2;
    const macGiven = 'com.docker.network.endpoint.macaddress' in options ? '02:42:ac:11:00:05' : '';
    const reply = await post('NetworkDriver.CreateEndpoint', {
      NetworkID: networkId,
      EndpointID: id,
      Interface: { Address: `10.47.0.${n}/24`, AddressIPv6: `fd47::${n}/64`, MacAddress: macGiven },
      Options: options,
    });
    t.equal(reply.status, 200, `${what}: ${JSON.stringify(reply.body)}`);
    const mac = macGiven || `0a:58:0a:2f:00:0${n}`;
    t.same(reply.body, macGiven ? {} : { Interface: { MacAddress: mac } }, `${what}: the answer as without options`);
    const row = await port(id);
    t.same(row?.addresses, [`${mac} 10.47.0.${n} fd47::${n}`], `${what}: the port's addresses`);
    t.same(row?.port_security, row?.addresses);
    t.same([...(row?.ids.keys() ?? [])].sort(), ['docker:chassis', 'docker:endpoint-id', 'docker:ipv4', 'docker:ipv6', 'docker:network-id', 'docker:owner', 'docker:switch'], `${what}: no option recorded`);
    t.same([...(row?.options.keys() ?? [])], ['requested-chassis']);

    // Join's Options are the sandbox's (29: the same keys ProgramExternalConnectivity gets).
    const joined = await post('NetworkDriver.Join', {
      NetworkID: networkId,
      EndpointID: id,
      SandboxKey: `/var/run/docker/netns/${id.slice(0, 12)}`,
      Options: { 'com.docker.network.endpoint.exposedports': [], 'com.docker.network.portmap': [], 'com.docker.network.endpoint.sysctls': 'net.ipv4.conf.IFNAME.forwarding=1' },
    });
    t.equal(joined.status, 200, JSON.stringify(joined.body));
    t.match(joined.body, { InterfaceName: { SrcName: `ovc${id.slice(0, 12)}`, DstPrefix: 'eth' } });
    const plug = calls.plugs.find((p) => p.endpointId === id);
    t.same(plug && Object.keys(plug).sort(), ['endpointId', 'mac', 'mtu', 'networkId', 'portName'], `${what}: plugged as always, no sysctl handed to the host`);

    t.equal((await post('NetworkDriver.Leave', { NetworkID: networkId, EndpointID: id })).status, 200);
    t.equal((await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: id })).status, 200);
  }
});

t.test('an endpoint option of the wrong kind is no reason to refuse either; only the body shape is checked', async (t) => {
  const id = hex(32);
  const reply = await post('NetworkDriver.CreateEndpoint', {
    NetworkID: networkId,
    EndpointID: id,
    Interface: { Address: '10.47.0.20/24', AddressIPv6: '', MacAddress: '' },
    Options: { 'com.docker.network.endpoint.sysctls': ['net.ipv4.conf.IFNAME.forwarding=1'] },
  });
  t.equal(reply.status, 200, JSON.stringify(reply.body));
  await post('NetworkDriver.DeleteEndpoint', { NetworkID: networkId, EndpointID: id });
  const bad = await post('NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: hex(32), Interface: {}, Options: 'com.docker.network.endpoint.sysctls=x' });
  t.equal(bad.status, 400);
  t.match(String(bad.body.Err), /^invalid NetworkDriver\.CreateEndpoint request: body\/Options must be object,null$/);
});
