# ovn-docker-driver in a container. It must run in the host's network namespace
# (it creates veths there), see the host's OVS database socket, and put its
# plugin socket where dockerd looks:
#
#   docker build -t ovn-docker-driver .
#   docker run -d --name ovn-docker-driver --restart always \
#     --network host --cap-add NET_ADMIN \
#     -v /run/docker/plugins:/run/docker/plugins \
#     -v /var/run/openvswitch:/var/run/openvswitch \
#     ovn-docker-driver [--ovn-nb tcp:CENTRAL_IP:6641]
#
# Networks route through the host by default (--gateway host): the driver adds
# iptables rules in chains of its own, in the backend (nft or legacy; the image
# has both) that the host's Docker rules are in, and needs net.ipv4.ip_forward=1
# on the host, which dockerd sets and a container cannot. --masquerade false
# leaves the firewall to you; --gateway docker uses Docker's docker_gwbridge
# instead. To remove everything it put on the host (docs/security.md): stop the
# container, then run the image once more with `cleanup` as its command.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends openvswitch-switch iproute2 ethtool iptables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ovn-docker-driver
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENTRYPOINT ["node", "/opt/ovn-docker-driver/dist/src/cli/main.js"]
