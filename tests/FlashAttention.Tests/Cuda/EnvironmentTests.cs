using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

public class EnvironmentTests
{
    [Fact]
    public void Probe_never_throws_and_explains_what_is_missing()
    {
        var report = CudaEnvironment.Probe();
        Assert.False(string.IsNullOrWhiteSpace(report.CacheDirectory));
        Assert.True(report.CacheSizeBytes >= 0);
        if (report.IsUsable)
        {
            Assert.True(report.DriverFound && report.NvrtcFound);
            Assert.NotNull(report.SupportedDeviceOrdinal);
            return;
        }
        Assert.NotNull(report.UnavailableReason);
        Assert.False(string.IsNullOrWhiteSpace(report.UnavailableMessage));
        Assert.DoesNotContain('\n', report.UnavailableMessage!);
        if (!report.DriverFound)
        {
            Assert.Equal(CudaUnavailableReason.DriverNotFound, report.UnavailableReason);
            Assert.StartsWith("libcuda.so.1 not found: install the NVIDIA driver", report.UnavailableMessage);
            Assert.Empty(report.Devices);
        }
    }

    [WithoutDriverFact]
    public void Without_a_driver_device_calls_raise_the_same_one_line_message()
    {
        Assert.Null(CudaDriverApi.TryGetInstance(out var error));
        var e = Assert.Throws<CudaUnavailableException>(() => CudaDevice.Get());
        Assert.Equal(error!.Message, e.Message);
        Assert.Throws<CudaUnavailableException>(() => new DeviceBuffer(16));
        Assert.Throws<CudaUnavailableException>(() => CudaDevice.Count);
    }
}
