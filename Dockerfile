# goldrush-follower container image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY follower ./follower
RUN python -m venv /opt/follower \
 && /opt/follower/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/follower --create-home follower
COPY --from=build /opt/follower /opt/follower
ENV PATH="/opt/follower/bin:$PATH" PYTHONUNBUFFERED=1
USER follower
WORKDIR /var/lib/follower
ENTRYPOINT ["follower"]
CMD ["run", "--config", "/etc/follower/follower.toml"]
